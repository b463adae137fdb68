"""Demand forecasts of the replay and the demand error it reports to policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST, load_trace
from engine.evaluate import run_evaluation
from engine.evaluation.demand import DemandErrorTracker, demand_forecast
from engine.evaluation.replay import TraceKnowledge
from engine.evaluation.simulate import Scenario, demand_profile
from engine.model import SLOT, CarbonSlot, Flavour

FIRST = datetime(2023, 3, 21, tzinfo=UTC)
FLAVOURS = (Flavour("high", 1.0, 1.0), Flavour("mid", 0.5, 0.6), Flavour("low", 0.3, 0.3))


def slots_from(index: int, count: int) -> list[CarbonSlot]:
    return [CarbonSlot(FIRST + SLOT * (index + step), FIRST + SLOT * (index + step + 1), 100.0)
            for step in range(count)]


def profile(start: datetime) -> float:
    return 100.0 + (start - FIRST) // SLOT


def test_seasonal_forecast_repeats_previous_day():
    served = np.arange(200, dtype=float)
    values = demand_forecast("seasonal", slots=slots_from(60, 60), profile=profile, served=served, current=60,
                             first=FIRST)

    assert values[0] == served[12]  # slot 60 a day earlier
    assert values[47] == served[59]  # slot 107: its previous day (59) is complete
    assert values[48] == served[12]  # slot 108: slot 60 is not served yet, so two days back


def test_seasonal_forecast_falls_back_before_a_day():
    served = np.arange(200, dtype=float)
    values = demand_forecast("seasonal", slots=slots_from(10, 4), profile=profile, served=served, current=10,
                             first=FIRST)

    assert values == (9.0, 9.0, 9.0, 9.0)


def test_naive_forecasts_know_nothing_before_first_slot():
    served = np.zeros(10)
    for mode in ("last-slot", "seasonal"):
        assert demand_forecast(mode, slots=slots_from(0, 4), profile=profile, served=served, current=0,
                               first=FIRST) == ()
    assert demand_forecast("exact", slots=slots_from(0, 2), profile=profile, served=served, current=0,
                           first=FIRST) == (100.0, 101.0)


def test_unknown_demand_forecast_is_rejected():
    with pytest.raises(ValueError, match="invalid demand forecast 'psychic'"):
        demand_forecast("psychic", slots=slots_from(3, 1), profile=profile, served=np.ones(5), current=3,
                        first=FIRST)


def test_tracker_reports_error_of_forecast_totals():
    tracker = DemandErrorTracker(window=timedelta(hours=24))
    tracker.expect(now=FIRST, demand=[100.0] * 48, slots=slots_from(0, 48))
    tracker.observe(100.0)
    assert tracker.options() == {"demandError": 0.0}

    tracker.expect(now=FIRST + SLOT, demand=[100.0] * 47, slots=slots_from(1, 47))
    tracker.observe(150.0)
    # First record: 200 forecast against 250 served; second: 100 against 150.
    assert tracker.options()["demandError"] == pytest.approx(50.0 / 150.0)


def test_tracker_is_silent_without_forecasts():
    tracker = DemandErrorTracker(window=timedelta(hours=24))
    tracker.expect(now=FIRST, demand=(), slots=slots_from(0, 48))
    tracker.observe(100.0)

    assert tracker.options() == {}


@pytest.mark.parametrize("mode", ["last-slot", "seasonal"])
@pytest.mark.parametrize("target_error", [0.15, 0.3])
def test_hedge_keeps_target_with_naive_demand_forecasts(mode, target_error):
    trace = load_trace(DEFAULT_ACTUAL, DEFAULT_FORECAST)
    scenario = Scenario(flavours=FLAVOURS, target_error=target_error, demand_forecast=mode,
                        demand=demand_profile("daily", requests_per_slot=1000.0))
    evaluation = run_evaluation(trace=trace, scenario=scenario, policies=["forecast-optimal"],
                                knowledge=TraceKnowledge(trace))
    row = {row.name: row for row in evaluation.rows}["forecast-optimal"]

    assert row.windows_below_target == 0
    assert row.reduction_percent > {0.15: 15.0, 0.3: 30.0}[target_error]  # still beats the constant mix
