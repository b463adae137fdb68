"""forecast-optimal served through the engine's HTTP API, with ledger feedback."""

from __future__ import annotations

import copy

import pytest

from engine.app import create_app
from engine.config import EngineConfig
from tests.engine.fakes import Clock, FakeSource, fake_factory

CONFIG = {
    "scheduler": {"policy": "forecast-optimal", "targetError": "0.15", "creditMin": -0.5, "creditMax": 0.5,
                  "validFor": 60, "throttleIntensityFloor": 100, "throttleIntensityCeiling": 250},
    "flavours": [{"name": "high", "precision": 100, "energy": 1.0, "enabled": True},
                 {"name": "mid", "precision": 50, "energy": 0.6, "enabled": True},
                 {"name": "low", "precision": 30, "energy": 0.3, "enabled": True}],
    "componentBounds": {"router": {"min": 1, "max": 5}, "consumer": {"min": 1, "max": 5},
                        "target": {"min": 1, "max": 10}},
}


def engine_client(intensities: list[float], clock: Clock | None = None):
    config = EngineConfig(source_factory=fake_factory(FakeSource(intensities)), clock=clock or Clock(),
                          demand_forecast=False, default_schedule="default/carbonstat")
    client = create_app(config).test_client()
    response = client.put("/config/default/carbonstat", json=copy.deepcopy(CONFIG))
    assert response.status_code == 200, response.get_json()
    return client


def test_dirty_slot_decision_moves_traffic_low():
    client = engine_client([250.0] + [100.0] * 95)
    decision = client.get("/schedule/default/carbonstat").get_json()

    assert decision["policy"] == "forecast-optimal"
    assert decision["flavourWeights"]["low"] == 100
    assert decision["flavourWeights"]["mid"] == 0
    assert decision["diagnostics"]["planCleanSlot"] is False
    assert decision["diagnostics"]["planSlotIntensity"] == pytest.approx(250.0)


def test_feedback_below_target_sends_all_high():
    clock = Clock()
    client = engine_client([250.0] + [100.0] * 95, clock)
    response = client.post("/feedback/default/carbonstat", json={"counts": {"low": 5000, "high": 100}})
    assert response.status_code == 200, response.get_json()
    clock.advance(seconds=61)  # past validFor, so the engine decides again

    decision = client.get("/schedule/default/carbonstat").get_json()

    assert decision["diagnostics"]["deliveredRequests"] == pytest.approx(5100.0)
    assert decision["flavourWeights"] == {"high": 100, "mid": 0, "low": 0}
    assert decision["diagnostics"]["planIntensityThreshold"] is None


def test_clean_plan_slot_keeps_throttle_open():
    # Intensity 200 is above the configured floor (100), so the throttle alone
    # would hold back processing; the plan keeps this cheap slot fully precise.
    client = engine_client([200.0] + [240.0] * 95)
    decision = client.get("/schedule/default/carbonstat").get_json()

    assert decision["diagnostics"]["planCleanSlot"] is True
    assert decision["flavourWeights"]["high"] == 100
    assert decision["processing"]["throttle"] == 1.0
    assert decision["processing"]["ceilings"]["target"] == 10


def test_demand_error_widens_live_hedge():
    clock = Clock()
    client = engine_client([250.0] * 200, clock)

    # Slot 1 serves 100 requests, so the flat forecast for slot 2 is 100 per slot.
    assert client.post("/feedback/default/carbonstat", json={"counts": {"high": 100}}).status_code == 200
    clock.advance(minutes=30)
    first = client.get("/schedule/default/carbonstat").get_json()
    # Slot 2 serves three times the forecast.
    assert client.post("/feedback/default/carbonstat", json={"counts": {"high": 300}}).status_code == 200
    clock.advance(minutes=30)
    second = client.get("/schedule/default/carbonstat").get_json()

    assert second["diagnostics"]["hedge"] > first["diagnostics"]["hedge"]
