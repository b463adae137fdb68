"""Forecast-optimal on the bundled GB trace against every policy and both references.

Scenario: flavours (100, 1.0), (50, 0.6), (30, 0.3), target error 0.15,
24 h windows, flat demand, one evaluation per slot.
"""

from __future__ import annotations

import pytest

from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST, OperatorForecast, Trace, load_trace
from engine.evaluate import policy_names, run_evaluation
from engine.evaluation.replay import TraceKnowledge
from engine.evaluation.simulate import Scenario
from engine.model import SLOT, Flavour

FLAVOURS = (Flavour("high", 1.0, 1.0), Flavour("mid", 0.5, 0.6), Flavour("low", 0.3, 0.3))


@pytest.fixture(scope="module")
def rows():
    trace = load_trace(DEFAULT_ACTUAL, DEFAULT_FORECAST)
    scenario = Scenario(flavours=FLAVOURS, target_error=0.15)
    evaluation = run_evaluation(trace=trace, scenario=scenario, policies=policy_names(None),
                                knowledge=TraceKnowledge(trace))
    return {row.name: row for row in evaluation.rows}


def test_every_registered_policy_is_evaluated(rows):
    assert set(policy_names(None)) <= set(rows)
    assert "forecast-optimal" in rows


def test_references_match_known_scale(rows):
    assert rows["optimum"].reduction_percent == pytest.approx(20.0, abs=0.5)
    assert rows["constant-mix"].reduction_percent == pytest.approx(15.0, abs=0.05)
    assert rows["optimum"].windows_below_target == 0
    assert rows["constant-mix"].windows_below_target == 0
    assert rows["p100"].reduction_percent == pytest.approx(0.0, abs=1e-9)


def test_forecast_optimal_reaches_ninety_percent_of_optimum(rows):
    assert rows["forecast-optimal"].optimum_share_percent >= 90.0


def test_forecast_optimal_keeps_every_window(rows):
    assert rows["forecast-optimal"].worst_window_precision >= 0.845
    assert rows["forecast-optimal"].windows_below_target == 0


def test_forecast_optimal_beats_every_policy_keeping_target(rows):
    best = rows["forecast-optimal"].reduction_percent
    for name, row in rows.items():
        if name in ("forecast-optimal", "optimum") or row.windows_below_target > 0:
            continue
        assert row.reduction_percent < best, name


def test_exact_forecasts_on_gb_actuals_stay_within_budget():
    # Forecast snapshots equal to the actuals, one issued at every slot start.
    measured = load_trace(DEFAULT_ACTUAL, None)
    starts = [measured.first + SLOT * slot for slot in range(len(measured.actuals))]
    snapshots = tuple(
        OperatorForecast(start, dict(zip(starts[index:], measured.actuals[index:], strict=True)))
        for index, start in enumerate(starts))
    trace = Trace(name="gb-exact", first=measured.first, actuals=measured.actuals, forecasts=snapshots)
    evaluation = run_evaluation(trace=trace, scenario=Scenario(flavours=FLAVOURS, target_error=0.15),
                                policies=["forecast-optimal"], knowledge=TraceKnowledge(trace))
    row = {row.name: row for row in evaluation.rows}["forecast-optimal"]

    assert row.windows_below_target == 0
    assert row.worst_window_precision >= 0.85 - 1e-9
    assert row.optimum_share_percent >= 98.0
