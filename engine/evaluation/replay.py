"""The carbon data available to the engine at each moment of a replayed trace.

The knowledge at source time `now` follows the engine's own trace replay:

- the slot containing `now` has its actual intensity, as the trace carbon
  source reports it (with `current="forecast"` it takes the latest forecast
  for that slot instead, as a live API would);
- the following slots come from the latest operator forecast snapshot issued
  at or before `now`, as long as that snapshot covers them without a gap;
- slots past that snapshot are forecast from the actuals up to the current
  slot with `engine.forecast.forecast_series` (seasonal naive by default,
  because a statsmodels fit per slot would make a whole-trace replay take
  minutes).

No future actual is ever read: a snapshot is only built from forecasts issued
at or before `now` and actuals of slots that started at or before it.
"""

from __future__ import annotations

import bisect
import logging
from datetime import datetime

from engine.carbon.trace import Trace
from engine.forecast import forecast_series
from engine.model import SLOT, CarbonSlot, CarbonSnapshot

CURRENT_MODES = ("actual", "forecast")


class TraceKnowledge:
    """Builder and cache of the carbon snapshot given to policies at each slot of a trace."""

    def __init__(self, trace: Trace, *, horizon_slots: int = 96, extension: str = "seasonal-naive",
                 current: str = "actual") -> None:
        if current not in CURRENT_MODES:
            expected = ", ".join(CURRENT_MODES)
            raise ValueError(f"invalid current-slot mode {current!r}: expected one of {expected}")
        if horizon_slots < 1:
            raise ValueError(f"invalid horizon of {horizon_slots} slots: expected at least 1")
        self.trace = trace
        self.horizon_slots = horizon_slots
        self.extension = extension
        self.current = current
        self._issue_times = [snapshot.issued_at for snapshot in trace.forecasts]
        self._cache: dict[tuple[int, int], tuple[CarbonSlot, ...]] = {}

    def slot_index(self, now: datetime) -> int:
        """Return the index in the trace of the slot that contains `now`."""
        return int((now - self.trace.first) // SLOT)

    def snapshot(self, now: datetime) -> CarbonSnapshot:
        """Return the carbon snapshot at source time `now` (inside the trace)."""
        index = self.slot_index(now)
        if not 0 <= index < len(self.trace.actuals):
            raise ValueError(f"time {now.isoformat()} is outside the trace {self.trace.name}")
        issued = bisect.bisect_right(self._issue_times, now)
        key = (index, issued)
        slots = self._cache.get(key)
        if slots is None:
            slots = self._build_slots(index, issued=issued)
            self._cache[key] = slots
        return CarbonSnapshot(now=now, slots=slots, source=f"trace:{self.trace.name}")

    def _build_slots(self, index: int, *, issued: int) -> tuple[CarbonSlot, ...]:
        start = self.trace.first + SLOT * index
        operator = self.trace.forecasts[issued - 1].values if issued else {}

        # The current slot, then the latest operator forecast while it has no gap.
        current = self.trace.actuals[index]
        if self.current == "forecast":
            current = operator.get(start, self.trace.actuals[index - 1] if index > 0 else current)
        values = [current]
        while len(values) < self.horizon_slots:
            value = operator.get(start + SLOT * len(values))
            if value is None:
                break
            values.append(value)

        # Beyond the operator forecast: a forecast from the actuals seen so far.
        missing = self.horizon_slots - len(values)
        if missing > 0:
            history = self.trace.actuals[: index + 1]
            extension = _quiet_forecast(history, horizon=self.horizon_slots - 1, model=self.extension)
            values.extend(extension[len(values) - 1:])
        return tuple(
            CarbonSlot(start + SLOT * step, start + SLOT * (step + 1), max(0.0, float(value)),
                       actual=step == 0 and self.current == "actual")
            for step, value in enumerate(values)
        )


def _quiet_forecast(history, *, horizon: int, model: str) -> tuple[float, ...]:
    """Run `forecast_series` without its per-call INFO line, which would flood a replay's output."""
    logger = logging.getLogger("engine.forecast")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return forecast_series(history, horizon=horizon, model=model).values
    finally:
        logger.setLevel(level)
