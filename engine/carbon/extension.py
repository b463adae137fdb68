"""Extension of a short forecast with the statsmodels forecaster, fitted off the request path.

Both the trace replay and the live providers need slots beyond the forecast
they have. `ForecastExtender.extend` returns the fitted forecast when the
background fit has finished (waiting at most `wait` seconds) and otherwise a
seasonal-naive stand-in, flagged as not final so callers do not cache it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Sequence
from dataclasses import replace

from engine.forecast import BackgroundForecaster, SeriesForecast, forecast_series

# Fit horizons are rounded up to whole days, and at least two, so one fit
# serves every caller whatever horizon it requests.
FIT_BLOCK = 48
MIN_FIT_HORIZON = 2 * FIT_BLOCK
MAX_STAND_INS = 64


class ForecastExtender:
    """Caches background fits and their seasonal-naive stand-ins by a caller-chosen key."""

    def __init__(self, *, wait: float = 0.0, name: str = "carbon-forecast") -> None:
        self.wait = wait
        self._forecaster = BackgroundForecaster(name=name)
        self._stand_ins: dict[Hashable, SeriesForecast] = {}
        self._lock = threading.Lock()

    def extend(
        self, key: Hashable, history: Sequence[float | None], steps: int
    ) -> tuple[SeriesForecast, bool]:
        """Forecast at least `steps` slots after the end of `history`; returns (forecast, fitted)."""
        horizon = max(MIN_FIT_HORIZON, math.ceil(steps / FIT_BLOCK) * FIT_BLOCK)
        fitted = self._forecaster.get((key, horizon), history, horizon=horizon, wait=self.wait)
        if fitted is not None:
            return fitted, True

        with self._lock:
            stand_in = self._stand_ins.get((key, horizon))
        if stand_in is None:
            naive = forecast_series(history, horizon=horizon, model="seasonal-naive")
            note = "model fit still running"
            stand_in = replace(naive, message="; ".join(filter(None, [naive.message, note])))
            with self._lock:
                if len(self._stand_ins) >= MAX_STAND_INS:
                    self._stand_ins.clear()
                self._stand_ins[(key, horizon)] = stand_in
        return stand_in, False

    def close(self) -> None:
        self._forecaster.close()
