"""Seasonal forecasts of half-hourly series (carbon intensity, demand) with statsmodels.

`forecast_series` is a plain function: values in, `horizon` finite values out.
It chooses the model by what the data allows and never returns NaN or
infinity:

- at least two seasons of data: Holt-Winters `ExponentialSmoothing` with an
  additive damped trend and additive seasonality (the default), or STL
  decomposition plus a damped ETS model when `model="stl-ets"` (faster);
- one to two seasons: seasonal naive (repeat the last season);
- less than one season: naive (repeat the last value).

Nulls and NaNs inside the series are filled by linear interpolation first.
Multiplicative seasonality is only used on strictly positive data. When a fit
raises or returns non-finite values, the function falls back to seasonal
naive and records that in `SeriesForecast.message`. Each call logs one line naming
the model used.

Fits take 50-300 ms, so callers on a request path use `BackgroundForecaster`,
which runs fits on one worker thread and caches results by a caller-chosen key
(for example the series end and length). statsmodels is imported lazily
because its first import takes over a second.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MODELS = ("holt-winters", "stl-ets", "seasonal-naive", "naive")


@dataclass(frozen=True)
class SeriesForecast:
    """Forecast values for the `horizon` steps after the series end, and how they were made."""

    values: tuple[float, ...]
    model: str
    message: str = ""


def forecast_series(
    values: Sequence[float | None],
    *,
    horizon: int,
    season: int = 48,
    model: str = "holt-winters",
    seasonal: str = "add",
) -> SeriesForecast:
    """Forecast `horizon` steps after the end of `values` (one value per step).

    `model` is one of `MODELS`; `seasonal` ("add" or "mul") applies to
    Holt-Winters. Raises ValueError when `values` has no finite value, when
    `horizon` < 1 or `season` < 2, or for an unknown model or seasonal form.
    """
    _check_arguments(horizon=horizon, season=season, model=model, seasonal=seasonal)
    series, filled = _filled_series(values)
    notes = [f"filled {filled} missing values by interpolation"] if filled else []
    started = time.perf_counter()

    chosen = _choose_model(model, points=len(series), season=season)
    if chosen != model:
        notes.append(f"series too short for {model} ({len(series)} points), used {chosen}")
    if chosen == "holt-winters" and seasonal == "mul" and float(series.min()) <= 0.0:
        notes.append("series has non-positive values, used additive instead of multiplicative seasonality")
        seasonal = "add"

    try:
        forecast = _run_model(chosen, series, horizon=horizon, season=season, seasonal=seasonal)
        if not np.all(np.isfinite(forecast)):
            raise FloatingPointError("model returned non-finite values")
    except Exception as error:  # noqa: BLE001 - any fit failure must fall back, never propagate
        fallback = "seasonal-naive" if len(series) >= season else "naive"
        notes.append(f"{chosen} failed ({error}), used {fallback}")
        chosen = fallback
        forecast = _run_model(chosen, series, horizon=horizon, season=season, seasonal=seasonal)

    # Carbon intensity and request counts are never negative, so a trend that
    # extrapolates below zero is clipped instead of reported.
    if float(series.min()) >= 0.0:
        forecast = np.clip(forecast, 0.0, None)

    message = "; ".join(notes)
    log.info(
        "forecast fitted model=%s points=%d horizon=%d seconds=%.3f message=%r",
        chosen, len(series), horizon, time.perf_counter() - started, message,
    )
    return SeriesForecast(values=tuple(float(v) for v in forecast), model=chosen, message=message)


def _check_arguments(*, horizon: int, season: int, model: str, seasonal: str) -> None:
    if horizon < 1:
        raise ValueError(f"invalid horizon {horizon}: must be at least 1 step")
    if season < 2:
        raise ValueError(f"invalid season {season}: must be at least 2 steps")
    if model not in MODELS:
        raise ValueError(f"unknown forecast model {model!r}: use one of {', '.join(MODELS)}")
    if seasonal not in ("add", "mul"):
        raise ValueError(f"invalid seasonal form {seasonal!r}: use 'add' or 'mul'")


def _filled_series(values: Sequence[float | None]) -> tuple[np.ndarray, int]:
    """Return the series as floats with interior and edge gaps interpolated, and the gap count."""
    raw = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    raw[~np.isfinite(raw)] = math.nan
    known = np.flatnonzero(~np.isnan(raw))
    if known.size == 0:
        raise ValueError(f"cannot forecast a series of {len(raw)} values with no finite value")
    missing = raw.size - known.size
    if missing:
        # np.interp keeps the first and last known values constant beyond the edges.
        raw = np.interp(np.arange(raw.size), known, raw[known])
    return raw, missing


def _choose_model(model: str, *, points: int, season: int) -> str:
    if model in ("holt-winters", "stl-ets") and points < 2 * season:
        model = "seasonal-naive"
    if model == "seasonal-naive" and points < season:
        model = "naive"
    return model


def _run_model(model: str, series: np.ndarray, *, horizon: int, season: int, seasonal: str) -> np.ndarray:
    if model == "naive":
        return np.full(horizon, series[-1])
    if model == "seasonal-naive":
        last_season = series[-season:]
        return np.resize(last_season, horizon)
    if model == "holt-winters":
        return _holt_winters(series, horizon=horizon, season=season, seasonal=seasonal)
    return _stl_ets(series, horizon=horizon, season=season)


def _holt_winters(series: np.ndarray, *, horizon: int, season: int, seasonal: str) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    _ignore_fit_warnings()
    with _single_blas_thread():
        fitted = ExponentialSmoothing(
            series, trend="add", damped_trend=True, seasonal=seasonal, seasonal_periods=season
        ).fit()
        return np.asarray(fitted.forecast(horizon), dtype=float)


def _stl_ets(series: np.ndarray, *, horizon: int, season: int) -> np.ndarray:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    from statsmodels.tsa.forecasting.stl import STLForecast

    _ignore_fit_warnings()
    with _single_blas_thread():
        fitted = STLForecast(
            series,
            ETSModel,
            model_kwargs={"error": "add", "trend": "add", "damped_trend": True},
            period=season,
        ).fit(fit_kwargs={"disp": False})
        return np.asarray(fitted.forecast(horizon), dtype=float)


def _single_blas_thread():
    """Limit OpenBLAS to one thread while a model is fitted.

    The matrices are tiny, so extra BLAS threads only spin. Measured on a
    2-vCPU machine under load: a 430-point Holt-Winters fit took 1.95 s of CPU
    with the default thread pool and 0.35 s with one thread. The limit is
    process-wide while it lasts (OpenBLAS has no per-thread setting).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _ignore_fit_warnings() -> None:
    """Silence statsmodels' convergence and overflow warnings, process-wide.

    The finite-output check guards the result instead. `warnings.catch_warnings`
    is not used because fits run on worker threads, and in Python 3.11 leaving
    that context restores the global filter list, undoing other threads' filters.
    Adding the same filter again replaces it, so repeated calls do not grow the list.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"statsmodels\.")


class BackgroundForecaster:
    """Runs `forecast_series` on a worker thread and caches results by key.

    `get` never blocks longer than its `wait` argument: it returns the cached
    forecast, or submits the fit (once per key) and returns None if it does
    not finish in time. The cache keeps the `max_entries` most recent keys.
    """

    def __init__(self, *, max_entries: int = 64, name: str = "forecast") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._futures: OrderedDict[Hashable, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(
        self,
        key: Hashable,
        values: Sequence[float | None],
        *,
        horizon: int,
        season: int = 48,
        model: str = "holt-winters",
        wait: float = 0.0,
    ) -> SeriesForecast | None:
        """Return the forecast for `key`, fitting it in the background on first request."""
        future = self._future_for(key, values, horizon=horizon, season=season, model=model)
        try:
            return future.result(timeout=max(wait, 0.0))
        except TimeoutError:
            return None
        except Exception as error:  # noqa: BLE001 - a failed fit is reported, never raised on the request path
            log.warning("forecast failed key=%r error=%r", key, error)
            return None

    def _future_for(
        self, key: Hashable, values: Sequence[float | None], *, horizon: int, season: int, model: str
    ) -> Future:
        with self._lock:
            future = self._futures.get(key)
            if future is not None:
                self._futures.move_to_end(key)
                return future
            series = tuple(values)  # copy, so later changes by the caller cannot reach the worker
            future = self._executor.submit(
                forecast_series, series, horizon=horizon, season=season, model=model
            )
            self._futures[key] = future
            while len(self._futures) > self._max_entries:
                self._futures.popitem(last=False)
            return future

    def close(self) -> None:
        """Stop the worker thread after the running fit; queued fits are dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)
