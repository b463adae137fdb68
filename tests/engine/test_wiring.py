"""The app wired to the real carbon package: bundled trace by default, no network."""

import pytest

from engine.app import create_app
from engine.config import EngineConfig
from tests.engine.conftest import CONFIG


def test_default_app_decides_on_bundled_trace():
    app = create_app(EngineConfig(demand_forecast=False))
    response = app.test_client().put("/config/default/trace", json=CONFIG)
    assert response.status_code == 200, response.get_json()
    carbon = response.get_json()["carbon"]
    assert carbon["available"] is True
    assert carbon["source"].startswith("trace")
    assert 40.0 <= carbon["now"] <= 250.0


def test_from_env_without_variables_builds_app():
    config = EngineConfig.from_env({})
    assert config.default_schedule is None
    assert config.carbon_settings == {}
    app = create_app(config)
    assert app.test_client().get("/healthz").status_code == 200


def test_from_env_rejects_bad_default_schedule():
    with pytest.raises(ValueError, match="namespace/name"):
        EngineConfig.from_env({"ENGINE_DEFAULT_SCHEDULE": "just-a-name"})
