"""The carbon-source interface and the slot arithmetic every source shares.

A source turns "what is the grid like now and over the next hours" into a
`CarbonSnapshot` of half-hour `CarbonSlot`s. Sources differ in where the
numbers come from (a bundled trace, a grid API) but share three rules:

- `snapshot` catches every `Exception` raised while building the snapshot:
  each failure becomes `stale=True` (last good data kept) or
  `available=False` with a `message`. Exceptions outside `Exception` (such as
  KeyboardInterrupt) propagate, and so does the error of a `now` that is not
  a datetime.
- Slot times are in *source time*. Live APIs use wall-clock time; a replayed
  trace maps wall-clock time onto the trace with `source_now`.
- Slots are half an hour long (`engine.model.SLOT`), aligned to the hour and
  contiguous, starting with the slot that contains source-now. Providers with
  other resolutions are resampled to that grid.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.model import SLOT, CarbonSnapshot

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CarbonSource(ABC):
    """Source of grid carbon intensity for the engine: the current slot and a forecast."""

    #: Provider name shown in decisions, such as "trace:gb-national-2023-03".
    name: str = "none"
    #: Source seconds per wall-clock second (1.0 unless a trace is replayed faster).
    time_scale: float = 1.0

    def source_now(self, wall_now: datetime) -> datetime:
        """Map wall-clock time to source time; identity for live providers."""
        return as_utc(wall_now)

    def to_wall(self, source_time: datetime, *, wall_now: datetime) -> datetime:
        """Return the wall-clock time at which the source reaches `source_time` (for validUntil)."""
        ahead = (as_utc(source_time) - self.source_now(wall_now)) / self.time_scale
        return as_utc(wall_now) + ahead

    @abstractmethod
    def snapshot(self, now: datetime, *, horizon: timedelta) -> CarbonSnapshot:
        """Return the grid at wall-clock `now` and the slots up to `now + horizon` (source time).

        Failures while building it are reported in the snapshot instead of raised
        (see the module docstring for the exceptions). The snapshot's `now` and
        slot times are source time.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing to release
        """Release worker threads; the default source holds none."""


class ProviderError(Exception):
    """A provider returned something that is not a usable forecast."""


@dataclass(frozen=True)
class Reading:
    """One value as a provider reported it, before resampling to half-hour slots."""

    start: datetime
    end: datetime
    intensity: float
    actual: bool = False
    index: str | None = None


def as_utc(moment: datetime) -> datetime:
    """Return `moment` in UTC; naive datetimes are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_time(text: object) -> datetime | None:
    """Parse an ISO 8601 / RFC 3339 timestamp such as "2023-03-14T03:30Z"; None if invalid."""
    if not isinstance(text, str) or not text.strip():
        return None
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        return as_utc(datetime.fromisoformat(cleaned))
    except ValueError:
        return None


def format_time(moment: datetime) -> str:
    """Format as the GB API and our decisions write times: "2023-03-14T03:30Z"."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%MZ")


def slot_start(moment: datetime) -> datetime:
    """Return the start of the half-hour slot that contains `moment`."""
    moment = as_utc(moment)
    offset = (moment - EPOCH) % SLOT
    return moment - offset


def slots_needed(now: datetime, horizon: timedelta) -> int:
    """Count the slots from the one containing `now` until `now + horizon` is covered."""
    span = as_utc(now) + horizon - slot_start(now)
    return max(1, math.ceil(span / SLOT))


def finite_number(value: object) -> float | None:
    """Return `value` as a finite float, or None for null, text, NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def resample_to_slots(readings: Iterable[Reading]) -> dict[datetime, Reading]:
    """Average readings onto half-hour slots, weighting each by the time it overlaps the slot.

    Hourly values fill both halves of their hour; five-minute values are
    averaged. A slot counts as actual only if every reading in it is actual.
    """
    totals: dict[datetime, list] = {}
    for reading in readings:
        if reading.end <= reading.start:
            continue
        cursor = reading.start
        while cursor < reading.end:
            start = slot_start(cursor)
            piece_end = min(reading.end, start + SLOT)
            weight = (piece_end - cursor).total_seconds()
            entry = totals.setdefault(start, [0.0, 0.0, True, None])
            entry[0] += reading.intensity * weight
            entry[1] += weight
            entry[2] = entry[2] and reading.actual
            entry[3] = entry[3] or reading.index
            cursor = piece_end
    return {
        start: Reading(start, start + SLOT, value_sum / weight_sum, actual, index)
        for start, (value_sum, weight_sum, actual, index) in sorted(totals.items())
        if weight_sum > 0
    }
