"""Demand history and forecast of one schedule, from the request counts sent as feedback.

Feedback counts are summed into half-hour slots of source time. The demand a
policy reads for the coming slots is a seasonal forecast of that history from
`engine.forecast` once at least two days of slots exist. Before that, or while
the fit runs on its worker thread, it is flat: the last complete slot's count
repeated. With no feedback at all the demand is unknown (an empty tuple).
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime

from engine.ledger import window_start_for
from engine.model import SLOT

log = logging.getLogger(__name__)

SEASON = 48  # half-hour slots per day
HISTORY_SLOTS = 7 * SEASON
MIN_FIT_SLOTS = 2 * SEASON


class DemandHistory:
    """Requests per half-hour slot, oldest first; the last entry is the slot in progress."""

    def __init__(self, *, forecaster=None) -> None:
        # forecaster: an object with engine.forecast.BackgroundForecaster's `get`, or None.
        self.forecaster = forecaster
        self._slot_start: datetime | None = None
        self._counts: deque[float] = deque(maxlen=HISTORY_SLOTS)

    def add(self, *, now: datetime, requests: float) -> None:
        """Add `requests` served in the slot that contains `now` (source time)."""
        self._advance(now)
        self._counts[-1] += requests

    def forecast(self, *, now: datetime, slots: int, key: str) -> tuple[float, ...]:
        """Return expected requests for `slots` slots from the one containing `now`."""
        if self._slot_start is None or slots <= 0:
            return ()
        self._advance(now)
        complete = list(self._counts)[:-1]
        if not complete:
            return ()
        flat = tuple(float(complete[-1]) for _ in range(slots))
        if self.forecaster is None or len(complete) < MIN_FIT_SLOTS:
            return flat
        # The cache key changes once per completed slot, so a fit runs once per slot and
        # horizon length, unless the forecaster's cache has evicted the key since.
        cache_key = (key, self._slot_start.isoformat(), len(complete), slots)
        result = self.forecaster.get(cache_key, complete, horizon=slots, season=SEASON)
        if result is None:
            return flat
        # The forecast starts at the slot in progress, the first one after the complete history.
        return tuple(max(0.0, value) for value in result.values[:slots])

    def completed_between(self, *, start: datetime, end: datetime) -> list[float]:
        """Return the requests of complete slots starting in [start, end), oldest first."""
        if self._slot_start is None:
            return []
        counts = list(self._counts)[:-1]
        first = self._slot_start - len(counts) * SLOT
        return [count for index, count in enumerate(counts) if start <= first + index * SLOT < end]

    def _advance(self, now: datetime) -> None:
        start = window_start_for(now, SLOT)
        if self._slot_start is None:
            self._slot_start = start
            self._counts.append(0.0)
            return
        missed = int((start - self._slot_start) / SLOT)
        if missed <= 0:
            return
        for _ in range(min(missed, HISTORY_SLOTS)):
            self._counts.append(0.0)
        self._slot_start = start


def default_forecaster():
    """Return a background forecaster when `engine.forecast` provides one, else None."""
    try:
        from engine.forecast import BackgroundForecaster
    except ImportError:
        log.info("demand forecast unavailable, using flat demand reason=no engine.forecast")
        return None
    return BackgroundForecaster(max_entries=1024, name="demand-forecast")
