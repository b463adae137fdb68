"""Replay of a recorded carbon-intensity trace: the default source when no API is configured.

A trace is two CSV files with times in UTC:

- actuals, columns `from,actual`: one measured value per half-hour slot;
- forecasts (optional), columns `issued_at,from,forecast`: snapshots of the
  grid operator's forecast, each issued at `issued_at`.

Wall-clock time maps onto the trace as
`source_now = trace_start + (wall_now - replay_started_at) * speedup`,
wrapping around to the first slot when it passes the end of the trace.

A snapshot never reads the actuals of slots after the current one. The current
slot's intensity is its actual. Later slots come from the latest forecast
snapshot issued at or before source-now. Slots that snapshot does not cover
are extended by the statsmodels forecaster fitted on actuals up to the
current slot. The fit runs on a background thread. Until it finishes, the
extension is seasonal naive and the snapshot message states it.
"""

from __future__ import annotations

import bisect
import csv
import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.carbon.base import CarbonSource, as_utc, format_time, parse_time, slot_start, slots_needed
from engine.carbon.extension import ForecastExtender
from engine.forecast import SeriesForecast
from engine.model import SLOT, CarbonSlot, CarbonSnapshot

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "carbon"
DEFAULT_ACTUAL = DATA_DIR / "gb-national-2023-03-actual.csv"
DEFAULT_FORECAST = DATA_DIR / "gb-national-2023-03-forecast.csv"

# Fits use at most 14 days of history: enough for a daily season, and it
# keeps a Holt-Winters fit in the low hundreds of milliseconds.
HISTORY_SLOTS = 14 * 48


@dataclass(frozen=True)
class OperatorForecast:
    """One forecast snapshot from the trace: issue time and value per slot start."""

    issued_at: datetime
    values: dict[datetime, float]


@dataclass(frozen=True)
class Trace:
    """Actuals on a regular half-hour grid starting at `first`, plus operator forecasts."""

    name: str
    first: datetime
    actuals: tuple[float, ...]
    forecasts: tuple[OperatorForecast, ...]

    @property
    def span(self) -> timedelta:
        return SLOT * len(self.actuals)


def load_trace(actual_path: Path, forecast_path: Path | None) -> Trace:
    """Read and check the trace CSV files; raises ValueError naming the file, line and value."""
    name = actual_path.name.removesuffix(".csv").removesuffix("-actual")
    first, actuals = _load_actuals(actual_path)
    forecasts = _load_forecasts(forecast_path) if forecast_path else ()
    return Trace(name=name, first=first, actuals=actuals, forecasts=forecasts)


def _rows(path: Path, columns: tuple[str, ...]):
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read carbon trace file {path}: {error.strerror}") from error
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"carbon trace file {path} is missing columns {missing}: expected header {','.join(columns)}"
            )
        yield from enumerate(reader, start=2)


def _cell_time(path: Path, line: int, text: str | None) -> datetime:
    moment = parse_time(text)
    if moment is None:
        raise ValueError(f"{path}:{line}: invalid time {text!r}, expected RFC 3339 such as 2023-03-14T03:30Z")
    if moment != slot_start(moment):
        raise ValueError(f"{path}:{line}: time {text!r} is not the start of a half-hour slot")
    return moment


def _cell_value(path: Path, line: int, text: str | None) -> float | None:
    if text is None or text.strip().lower() in ("", "null", "nan"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{path}:{line}: invalid intensity {text!r}, expected a number >= 0 or empty")
    return value


def _load_actuals(path: Path) -> tuple[datetime, tuple[float, ...]]:
    by_slot: dict[datetime, float | None] = {}
    for line, row in _rows(path, ("from", "actual")):
        start = _cell_time(path, line, row["from"])
        if start in by_slot:
            raise ValueError(f"{path}:{line}: duplicate slot {row['from']}")
        by_slot[start] = _cell_value(path, line, row["actual"])
    known = sorted(s for s, v in by_slot.items() if v is not None)
    if len(known) < 2:
        raise ValueError(f"carbon trace file {path} needs at least 2 slots with a value, found {len(known)}")

    # Missing slots and empty cells are filled by linear interpolation so the
    # replay has one value per slot. The count is logged, never hidden.
    first, last = known[0], known[-1]
    count = int((last - first) / SLOT) + 1
    starts = [first + SLOT * i for i in range(count)]
    values = [by_slot.get(s) for s in starts]
    filled = sum(v is None for v in values)
    if filled:
        values = _interpolate(values)
        log.warning("carbon trace gaps filled file=%s slots=%d", path, filled)
    return first, tuple(values)


def _interpolate(values: list[float | None]) -> list[float]:
    known = [i for i, v in enumerate(values) if v is not None]
    result = []
    for i, value in enumerate(values):
        if value is not None:
            result.append(value)
            continue
        right = bisect.bisect(known, i)
        lo, hi = known[right - 1], known[right]
        fraction = (i - lo) / (hi - lo)
        result.append(values[lo] + (values[hi] - values[lo]) * fraction)
    return result


def _load_forecasts(path: Path) -> tuple[OperatorForecast, ...]:
    snapshots: dict[datetime, dict[datetime, float]] = {}
    for line, row in _rows(path, ("issued_at", "from", "forecast")):
        issued = parse_time(row["issued_at"])
        if issued is None:
            raise ValueError(f"{path}:{line}: invalid issued_at {row['issued_at']!r}, expected RFC 3339")
        value = _cell_value(path, line, row["forecast"])
        if value is not None:
            snapshots.setdefault(issued, {})[_cell_time(path, line, row["from"])] = value
    return tuple(OperatorForecast(issued, values) for issued, values in sorted(snapshots.items()))


class TraceSource(CarbonSource):
    """Replays a `Trace` in wall-clock time, optionally sped up, with forecast extension."""

    def __init__(
        self,
        trace: Trace,
        *,
        start: datetime | None = None,
        speedup: float = 1.0,
        forecast_wait: float = 0.0,
        replay_started_at: datetime | None = None,
    ) -> None:
        if not math.isfinite(speedup) or speedup <= 0:
            raise ValueError(f"invalid trace speed-up {speedup!r}: must be a number > 0")
        self.trace = trace
        self.name = f"trace:{trace.name}"
        self.time_scale = float(speedup)
        self.start = as_utc(start) if start else trace.first
        if not trace.first <= self.start < trace.first + trace.span:
            raise ValueError(
                f"trace start {format_time(self.start)} is outside the trace "
                f"{format_time(trace.first)} to {format_time(trace.first + trace.span)}"
            )
        self.replay_started_at = as_utc(replay_started_at or datetime.now(UTC))
        self._extender = ForecastExtender(wait=forecast_wait, name="trace-forecast")
        self._issue_times = [f.issued_at for f in trace.forecasts]
        self._slots_cache: dict[tuple[int, int, int], tuple[tuple[CarbonSlot, ...], str]] = {}
        self._lock = threading.Lock()
        self._lap = 0
        log.info(
            "carbon trace replay started source=%s start=%s speedup=%g slots=%d forecasts=%d",
            self.name, format_time(self.start), speedup, len(trace.actuals), len(trace.forecasts),
        )
        # Start the first fit before the first request. With two days of
        # history or more, this also pays the slow statsmodels import early.
        self._extension(self._index_of(self.start), 1)

    def source_now(self, wall_now: datetime) -> datetime:
        elapsed = (as_utc(wall_now) - self.replay_started_at) * self.time_scale
        offset = (self.start - self.trace.first) + elapsed
        lap, within = divmod(offset, self.trace.span)
        if lap > self._lap:
            self._lap = lap
            log.info("carbon trace wrapped to its first slot source=%s lap=%d", self.name, lap)
        return self.trace.first + within

    def snapshot(self, now: datetime, *, horizon: timedelta) -> CarbonSnapshot:
        try:
            source_now = self.source_now(now)
            count = slots_needed(source_now, horizon)
            issued = bisect.bisect_right(self._issue_times, source_now)
            slots, message = self._slots(self._index_of(source_now), count=count, issued=issued)
            return CarbonSnapshot(
                now=source_now, slots=slots, source=self.name, message=message, time_scale=self.time_scale
            )
        except Exception as error:  # noqa: BLE001 - a snapshot must never raise into the engine
            log.exception("carbon trace snapshot failed source=%s", self.name)
            return CarbonSnapshot(
                now=as_utc(now), source=self.name, available=False,
                message=f"trace replay failed: {error!r}", time_scale=self.time_scale,
            )

    def close(self) -> None:
        self._extender.close()

    def _index_of(self, source_time: datetime) -> int:
        return int((slot_start(source_time) - self.trace.first) / SLOT)

    def _slots(self, index: int, *, count: int, issued: int) -> tuple[tuple[CarbonSlot, ...], str]:
        """Build `count` slots from slot `index`, using the first `issued` operator forecasts."""
        cached = self._slots_cache.get((index, count, issued))
        if cached is not None:
            return cached
        current = self.trace.first + SLOT * index
        slots = [CarbonSlot(current, current + SLOT, self.trace.actuals[index], actual=True)]

        # Future slots: the latest operator forecast issued at or before source-now.
        operator = self.trace.forecasts[issued - 1] if issued else None
        for step in range(1, count):
            value = operator.values.get(current + SLOT * step) if operator else None
            if value is None:
                break
            slots.append(CarbonSlot(current + SLOT * step, current + SLOT * (step + 1), value))
        notes = [f"operator forecast issued {format_time(operator.issued_at)}"] if len(slots) > 1 else []

        # Beyond the operator forecast: the model fitted on actuals so far.
        missing = count - len(slots)
        final = True
        if missing > 0:
            extension, final = self._extension(index, count - 1)
            for step in range(len(slots), count):
                start = current + SLOT * step
                slots.append(CarbonSlot(start, start + SLOT, extension.values[step - 1]))
            notes.append(f"{missing} slots from {extension.model}")
            if extension.message:
                notes.append(extension.message)
            if final and index + 1 < len(self.trace.actuals):
                self._extension(index + 1, count - 1)  # fit the next slot ahead of time
        result = (tuple(slots), "; ".join(notes))
        if final:
            with self._lock:
                if len(self._slots_cache) > 256:
                    self._slots_cache.clear()
                self._slots_cache[(index, count, issued)] = result
        return result

    def _extension(self, index: int, steps: int) -> tuple[SeriesForecast, bool]:
        """Forecast `steps` slots after slot `index` from actuals up to it; (forecast, fitted)."""
        history = self.trace.actuals[max(0, index + 1 - HISTORY_SLOTS) : index + 1]
        return self._extender.extend((index, len(history)), history, steps)
