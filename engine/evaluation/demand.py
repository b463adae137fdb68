"""Demand forecasts given to replayed policies, and the demand forecast error passed to them.

Modes of the demand forecast:

- `exact`: the demand profile itself, a perfect forecast;
- `last-slot`: the previous slot's requests repeated, as the engine forecasts
  demand before it has two days of history;
- `seasonal`: the requests of the same slot one day earlier (seasonal naive),
  close to what the engine's seasonal model gives once it has history. Before
  a day of history exists it falls back to `last-slot`.

Before any slot has been served, every mode except `exact` returns no demand,
as the engine does without feedback.

`DemandErrorTracker` measures how wrong the forecasts were, so the replay can
pass the figure to policies as `options["demandError"]`. For each evaluation
of the last day it compares the forecast total of the slots served since then
(up to the window end) with their realised total, and the option is the
largest of these relative errors.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

from engine.ledger import window_start_for
from engine.model import SLOT, CarbonSlot

DEMAND_FORECASTS = ("exact", "last-slot", "seasonal")
SLOTS_PER_DAY = 48


def demand_forecast(
    mode: str, *, slots: Sequence[CarbonSlot], profile, served: np.ndarray, current: int, first: datetime
) -> tuple[float, ...]:
    """Return the demand forecast for `slots` given to a policy at slot index `current` of the trace.

    `profile(start)` returns the true requests of the slot starting at
    `start`. `served` contains the realised requests per trace slot, complete
    for slots before `current`.
    """
    if mode == "exact":
        return tuple(profile(slot.start) for slot in slots)
    if mode not in DEMAND_FORECASTS:
        raise ValueError(f"invalid demand forecast {mode!r}: expected one of {', '.join(DEMAND_FORECASTS)}")
    if current == 0:
        return ()
    last = float(served[current - 1])
    if mode == "last-slot":
        return (last,) * len(slots)

    values = []
    for slot in slots:
        index = int((slot.start - first) // SLOT)
        # The same slot on the latest day that is already complete.
        earlier = index - SLOTS_PER_DAY * max(1, -(-(index - current + 1) // SLOTS_PER_DAY))
        values.append(float(served[earlier]) if earlier >= 0 else last)
    return tuple(values)


class DemandErrorTracker:
    """Relative errors of the demand forecasts of one replay, over the last day of evaluations.

    Each evaluation at a slot start opens a record of its forecast for the
    rest of the quality window. As slots are served, the record compares the
    forecast total of the slots served so far with their realised total, so
    errors of long leads show up before the window closes.
    """

    def __init__(self, *, window: timedelta, memory: int = SLOTS_PER_DAY) -> None:
        self._window = window
        self._errors: deque[float] = deque(maxlen=memory)
        self._open: list[_ForecastRecord] = []

    def expect(self, *, now: datetime, demand: Sequence[float], slots: Sequence[CarbonSlot]) -> None:
        """Record the forecast made at the start of the slot containing `now`."""
        window_end = window_start_for(now, self._window) + self._window
        forecast = [value for value, slot in zip(demand, slots, strict=False) if slot.start < window_end]
        if forecast:
            self._open.append(_ForecastRecord(forecast))

    def observe(self, requests: float) -> None:
        """Add the realised requests of the slot just served to every open record."""
        still_open = []
        for record in self._open:
            record.add(requests)
            if record.done:
                self._close(record)
            else:
                still_open.append(record)
        self._open = still_open

    def options(self) -> dict[str, float]:
        """Return `{"demandError": ...}`, or nothing before the first observation."""
        errors = [*self._errors, *(record.error for record in self._open if record.error is not None)]
        return {"demandError": min(1.0, max(errors))} if errors else {}

    def _close(self, record: _ForecastRecord) -> None:
        if record.error is not None:
            self._errors.append(record.error)


class _ForecastRecord:
    """One evaluation's demand forecast for the rest of its window, compared as slots are served."""

    def __init__(self, forecast: list[float]) -> None:
        self._forecast = forecast
        self._served = 0
        self._forecast_total = 0.0
        self._realised_total = 0.0
        self.error: float | None = None

    @property
    def done(self) -> bool:
        return self._served >= len(self._forecast)

    def add(self, requests: float) -> None:
        self._forecast_total += self._forecast[self._served]
        self._realised_total += requests
        self._served += 1
        if self._realised_total > 0:
            self.error = abs(self._forecast_total - self._realised_total) / self._realised_total
