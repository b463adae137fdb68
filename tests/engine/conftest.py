"""Fixtures: an engine app on a fake carbon source and a hand-moved clock."""

import pytest

from engine.app import create_app
from engine.config import EngineConfig
from tests.engine.fakes import Clock, FakeSource, fake_factory

CONFIG = {
    "scheduler": {"policy": "credit-greedy", "targetError": "0.1", "creditMin": "-0.5", "creditMax": 0.5,
                  "validFor": 60, "throttleMin": "0.2", "throttleIntensityFloor": 100,
                  "throttleIntensityCeiling": 250},
    "flavours": [{"name": "high", "precision": 100, "energy": 1.0, "enabled": True},
                 {"name": "mid", "precision": 50, "energy": 0.6, "enabled": True},
                 {"name": "low", "precision": 25, "energy": 0.3, "enabled": True}],
    "componentBounds": {"router": {"min": 1, "max": 5}, "consumer": {"min": 1, "max": 5},
                        "target": {"min": 1, "max": 10}},
}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def source():
    return FakeSource([200.0] * 96)


@pytest.fixture
def app(clock, source):
    config = EngineConfig(source_factory=fake_factory(source), clock=clock, demand_forecast=False,
                          default_schedule="default/carbonstat")
    return create_app(config)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def configured(client):
    response = client.put("/config/default/carbonstat", json=CONFIG)
    assert response.status_code == 200, response.get_json()
    return client
