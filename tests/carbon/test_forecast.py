"""The statsmodels forecaster: model choice, guards, fallbacks, background cache, real-trace accuracy."""

from __future__ import annotations

import logging
import math
import threading

import numpy as np
import pytest

import engine.forecast as forecast_module
from engine.carbon.evaluation import evaluate_trace
from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST, load_trace
from engine.forecast import BackgroundForecaster, SeriesForecast, forecast_series


@pytest.fixture(scope="module")
def actuals() -> list[float]:
    return list(load_trace(DEFAULT_ACTUAL, None).actuals)


def test_zero_in_filled_gap_gives_finite_forecast(actuals, caplog):
    series: list[float | None] = actuals[:200]
    series[150] = None
    series[151] = 0.0
    with caplog.at_level(logging.INFO, logger="engine.forecast"):
        result = forecast_series(series, horizon=24)
    assert len(result.values) == 24
    assert all(math.isfinite(v) for v in result.values)
    assert result.model == "holt-winters"
    assert "filled 1 missing values" in result.message
    # Background fits of other tests' sources may log meanwhile; count this thread's lines only.
    lines = [
        r.getMessage()
        for r in caplog.records
        if "forecast fitted" in r.getMessage() and r.thread == threading.get_ident()
    ]
    assert len(lines) == 1
    assert "model=holt-winters" in lines[0]


def test_zero_with_multiplicative_uses_additive(actuals):
    series = actuals[:200]
    series[151] = 0.0
    result = forecast_series(series, horizon=24, seasonal="mul")
    assert result.model == "holt-winters"
    assert "used additive instead of multiplicative" in result.message
    assert all(math.isfinite(v) for v in result.values)


def test_multiplicative_on_positive_data_is_kept(actuals):
    result = forecast_series(actuals[:200], horizon=12, seasonal="mul")
    assert result.model == "holt-winters"
    assert "additive" not in result.message


def test_stl_ets_model(actuals):
    result = forecast_series(actuals[:200], horizon=48, model="stl-ets")
    assert result.model == "stl-ets"
    assert len(result.values) == 48
    assert all(math.isfinite(v) for v in result.values)


def test_short_series_uses_seasonal_naive(actuals):
    result = forecast_series(actuals[:60], horizon=50)
    assert result.model == "seasonal-naive"
    assert "series too short for holt-winters (60 points)" in result.message
    last_day = actuals[12:60]
    assert list(result.values[:48]) == last_day
    assert list(result.values[48:]) == last_day[:2]


def test_very_short_series_uses_naive():
    result = forecast_series([100.0, None, 120.0], horizon=5)
    assert result.model == "naive"
    assert result.values == (120.0,) * 5


def test_non_finite_fit_falls_back(actuals, monkeypatch, caplog):
    monkeypatch.setattr(forecast_module, "_holt_winters", lambda series, **_: np.full(24, np.nan))
    with caplog.at_level(logging.INFO, logger="engine.forecast"):
        result = forecast_series(actuals[:200], horizon=24)
    assert result.model == "seasonal-naive"
    assert "holt-winters failed (model returned non-finite values)" in result.message
    assert list(result.values) == actuals[152:176]
    assert any("model=seasonal-naive" in r.getMessage() for r in caplog.records)


def test_raising_fit_falls_back(actuals, monkeypatch):
    def broken(series, **_):
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(forecast_module, "_stl_ets", broken)
    result = forecast_series(actuals[:200], horizon=6, model="stl-ets")
    assert result.model == "seasonal-naive"
    assert "stl-ets failed (singular matrix)" in result.message


def test_negative_forecast_of_non_negative_series_is_clipped(actuals, monkeypatch):
    monkeypatch.setattr(forecast_module, "_holt_winters", lambda series, **_: np.array([5.0, -3.0, -40.0]))
    result = forecast_series(actuals[:200], horizon=3)
    assert result.values == (5.0, 0.0, 0.0)


def test_non_finite_inputs_are_treated_as_missing():
    result = forecast_series([10.0, math.nan, math.inf, 40.0], horizon=2)
    assert result.values == (40.0, 40.0)
    assert "filled 2 missing values" in result.message


@pytest.mark.parametrize(
    ("values", "options", "expected"),
    [
        ([None, None], {"horizon": 3}, "no finite value"),
        ([], {"horizon": 3}, "no finite value"),
        ([1.0, 2.0], {"horizon": 0}, "invalid horizon 0"),
        ([1.0, 2.0], {"horizon": 3, "season": 1}, "invalid season 1"),
        ([1.0, 2.0], {"horizon": 3, "model": "prophet"}, "unknown forecast model 'prophet'"),
        ([1.0, 2.0], {"horizon": 3, "seasonal": "log"}, "invalid seasonal form 'log'"),
    ],
)
def test_invalid_arguments_are_rejected(values, options, expected):
    with pytest.raises(ValueError, match=expected):
        forecast_series(values, **options)


def test_background_forecaster_fits_once_per_key(monkeypatch):
    release = threading.Event()
    calls = []

    def slow_forecast(values, **options):
        calls.append(options)
        release.wait(5)
        return SeriesForecast(values=(1.0,) * options["horizon"], model="stub")

    monkeypatch.setattr(forecast_module, "forecast_series", slow_forecast)
    forecaster = BackgroundForecaster()
    try:
        assert forecaster.get("k", [1.0, 2.0], horizon=4) is None
        assert forecaster.get("k", [1.0, 2.0], horizon=4) is None
        release.set()
        result = forecaster.get("k", [1.0, 2.0], horizon=4, wait=5)
        assert result is not None
        assert result.values == (1.0,) * 4
        assert len(calls) == 1
    finally:
        forecaster.close()


def test_holt_winters_beats_seasonal_naive_on_real_trace():
    evaluation = evaluate_trace(load_trace(DEFAULT_ACTUAL, DEFAULT_FORECAST), models=("holt-winters",))
    model, naive = evaluation.scores["holt-winters"], evaluation.scores["seasonal-naive"]
    assert evaluation.origins == 14
    assert model.fallbacks == 0
    for band in range(2):
        assert model.count[band] == naive.count[band] > 100
        assert model.mae(band) < naive.mae(band)
