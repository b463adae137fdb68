"""Test doubles for the engine: a settable clock and an in-memory carbon source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.ledger import window_start_for
from engine.model import SLOT, CarbonSlot, CarbonSnapshot, Flavour

START = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)

THREE_FLAVOURS = (
    Flavour(name="high", precision=1.0, energy=1.0),
    Flavour(name="mid", precision=0.5, energy=0.6),
    Flavour(name="low", precision=0.25, energy=0.3),
)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


def slots_from(start: datetime, intensities: list[float]) -> tuple[CarbonSlot, ...]:
    """Build contiguous half-hour slots starting at the slot containing `start`."""
    first = window_start_for(start, SLOT)
    return tuple(CarbonSlot(start=first + index * SLOT, end=first + (index + 1) * SLOT, intensity=value)
                 for index, value in enumerate(intensities))


def snapshot(intensities: list[float], *, now: datetime = START, available: bool = True,
             stale: bool = False) -> CarbonSnapshot:
    return CarbonSnapshot(now=now, slots=slots_from(now, intensities) if available else (),
                          source="fake", available=available, stale=stale)


class FakeSource:
    """Carbon source serving a fixed list of per-slot intensities from a fixed origin (source time)."""

    name = "fake"

    def __init__(self, intensities: list[float] | None = None, *, origin: datetime = START,
                 available: bool = True, time_scale: float = 1.0) -> None:
        self.intensities = list(intensities or [150.0] * 96)
        self.origin = window_start_for(origin, SLOT)
        self.available = available
        self.time_scale = time_scale
        self.wall_origin = origin
        self.calls = 0

    def source_now(self, wall_now: datetime) -> datetime:
        return self.wall_origin + (wall_now - self.wall_origin) * self.time_scale

    def snapshot(self, now: datetime, *, horizon: timedelta) -> CarbonSnapshot:
        self.calls += 1
        source_now = self.source_now(now)
        if not self.available:
            return CarbonSnapshot(now=source_now, available=False, source=self.name,
                                  message="fake source has no data", time_scale=self.time_scale)
        index = int((window_start_for(source_now, SLOT) - self.origin) / SLOT)
        values = self.intensities[max(0, index):]
        return CarbonSnapshot(now=source_now, slots=slots_from(source_now, values), source=self.name,
                              time_scale=self.time_scale)


def fake_factory(source: FakeSource):
    """Return a source factory that serves `source` and rejects targets other than "" and "fake"."""

    def build(target, *, timeout, cache_ttl, settings=None):
        if target not in ("", "fake"):
            raise ValueError(f"unknown carbonTarget {target!r}; valid forms are '' and 'fake'")
        return source

    return build
