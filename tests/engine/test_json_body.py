"""Request bodies the JSON parser cannot take: deep nesting gets a 400, never a 500."""

import json

import pytest

from tests.engine.conftest import CONFIG


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path, method", [
    ("/config/default/carbonstat", "put"),
    ("/feedback/default/carbonstat", "post"),
    ("/schedule/default/carbonstat/manual", "post"),
])
def test_deeply_nested_body_rejected(configured, path, method):
    response = getattr(configured, method)(path, data=nested(1000), content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid JSON: nested too deeply"


def test_deep_value_inside_config_rejected(configured):
    body = json.dumps(CONFIG)[:-1] + ', "state": {"x": ' + nested(200) + "}}"
    response = configured.put("/config/default/carbonstat", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid JSON: nested too deeply"


def test_ordinary_nesting_accepted(configured):
    response = configured.put("/config/default/carbonstat", json=CONFIG)
    assert response.status_code == 200
