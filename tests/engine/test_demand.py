"""Demand history: slot sums, flat fallback and the seasonal forecast path."""

from datetime import timedelta

from engine.demand import MIN_FIT_SLOTS, DemandHistory
from engine.forecast import SeriesForecast
from tests.engine.fakes import START


class RecordingForecaster:
    def __init__(self, values=None):
        self.calls = []
        self.values = values

    def get(self, key, values, *, horizon, season):
        self.calls.append((key, list(values), horizon, season))
        if self.values is None:
            return None
        return SeriesForecast(values=tuple(self.values[:horizon]), model="test", message="")


def test_no_feedback_means_unknown_demand():
    assert DemandHistory().forecast(now=START, slots=4, key="a/b") == ()


def test_flat_demand_repeats_last_complete_slot():
    history = DemandHistory()
    history.add(now=START, requests=40)
    history.add(now=START + timedelta(minutes=10), requests=20)
    assert history.forecast(now=START + timedelta(minutes=20), slots=3, key="a/b") == ()
    history.add(now=START + timedelta(minutes=35), requests=5)
    assert history.forecast(now=START + timedelta(minutes=40), slots=3, key="a/b") == (60.0, 60.0, 60.0)


def test_gap_in_feedback_counts_as_zero_slots():
    history = DemandHistory()
    history.add(now=START, requests=40)
    assert history.forecast(now=START + timedelta(hours=2), slots=2, key="a/b") == (0.0, 0.0)


def test_seasonal_forecast_used_after_two_days():
    forecaster = RecordingForecaster(values=[7.0, 8.0, -1.0, 9.0])
    history = DemandHistory(forecaster=forecaster)
    for slot in range(MIN_FIT_SLOTS):
        history.add(now=START + slot * timedelta(minutes=30), requests=float(slot % 48))
    now = START + MIN_FIT_SLOTS * timedelta(minutes=30)
    assert history.forecast(now=now, slots=3, key="a/b") == (7.0, 8.0, 0.0)
    key, values, horizon, season = forecaster.calls[0]
    assert len(values) == MIN_FIT_SLOTS
    assert horizon == 3
    assert season == 48


def test_pending_fit_falls_back_to_flat():
    forecaster = RecordingForecaster(values=None)
    history = DemandHistory(forecaster=forecaster)
    for slot in range(MIN_FIT_SLOTS):
        history.add(now=START + slot * timedelta(minutes=30), requests=10.0)
    now = START + MIN_FIT_SLOTS * timedelta(minutes=30)
    assert history.forecast(now=now, slots=2, key="a/b") == (10.0, 10.0)
    assert len(forecaster.calls) == 1
