"""Upper bounds on engine inputs: huge durations, counts and replica bounds get a 400 naming the field."""

import copy
import math

import pytest

from tests.engine.conftest import CONFIG


def config_with(**scheduler):
    body = copy.deepcopy(CONFIG)
    body["scheduler"].update(scheduler)
    return body


def details(response) -> dict[str, str]:
    return {detail["field"]: detail["message"] for detail in response.get_json()["details"]}


@pytest.mark.parametrize("field, value", [
    ("validFor", 1e308),
    ("validFor", "2d"),
    ("creditWindow", 1e20),
    ("creditWindow", "99999999999h"),
    ("creditWindow", "31d"),
    ("discoveryInterval", 1e308),
    ("carbonTimeout", 1e308),
    ("carbonTimeout", "61s"),
    ("carbonCacheTTL", 1e308),
    ("carbonCacheTTL", "25h"),
    ("creditWindow", "9" * 400),
])
def test_huge_scheduler_duration_rejected(client, field, value):
    response = client.put("/config/default/huge", json=config_with(**{field: value}))
    assert response.status_code == 400
    messages = details(response)
    assert list(messages) == [f"scheduler.{field}"]
    assert "at most" in messages[f"scheduler.{field}"]
    assert "e+" not in messages[f"scheduler.{field}"].split(", got")[0]


@pytest.mark.parametrize("field, value", [
    ("validFor", "1d"), ("creditWindow", "30d"), ("carbonTimeout", 60), ("carbonCacheTTL", "24h"),
    ("discoveryInterval", 86400),
])
def test_duration_at_bound_accepted(client, field, value):
    response = client.put("/config/default/edge", json=config_with(**{field: value}))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("ttl", [1e308, "99999999999h", 86401])
def test_huge_manual_ttl_rejected(configured, ttl):
    response = configured.post("/schedule/default/carbonstat/manual",
                               json={"flavourWeights": {"high": 100}, "ttlSeconds": ttl})
    assert response.status_code == 400
    messages = details(response)
    assert list(messages) == ["ttlSeconds"]
    assert "at most 86400 seconds" in messages["ttlSeconds"]


@pytest.mark.parametrize("bounds", [
    {"min": 1, "max": 1e308},
    {"min": 1, "max": 10001},
    {"min": 20000, "max": 20000},
])
def test_huge_replica_bounds_rejected(client, bounds):
    body = copy.deepcopy(CONFIG)
    body["componentBounds"]["target"] = bounds
    response = client.put("/config/default/huge", json=body)
    assert response.status_code == 400
    messages = details(response)
    assert list(messages) == ["componentBounds.target"]
    assert "at most 10000" in messages["componentBounds.target"]
    assert len(messages["componentBounds.target"]) < 100


def test_replica_bound_of_10000_accepted(client):
    body = copy.deepcopy(CONFIG)
    body["componentBounds"]["target"] = {"min": 1, "max": 10000}
    response = client.put("/config/default/edge", json=body)
    assert response.status_code == 200
    processing = response.get_json()["processing"]
    assert processing["ceilings"]["target"] == math.floor(10000 * processing["throttle"])


@pytest.mark.parametrize("counts, bad", [
    ({"high": 1e308, "low": 1e308}, {"counts.high", "counts.low"}),
    ({"high": 1e12 + 1, "low": 5}, {"counts.high"}),
    ({"high": "nan"}, {"counts.high"}),
    ({"high": "inf"}, {"counts.high"}),
])
def test_huge_feedback_counts_rejected(configured, counts, bad):
    response = configured.post("/feedback/default/carbonstat", json={"counts": counts})
    assert response.status_code == 400
    assert set(details(response)) == bad
    assert "Infinity" not in response.get_data(as_text=True)
    balance = configured.get("/schedule/default/carbonstat").get_json()["credits"]["balance"]
    assert balance == 0.0


def test_feedback_count_of_1e12_accepted(configured):
    response = configured.post("/feedback/default/carbonstat", json={"counts": {"high": 1e12}})
    assert response.status_code == 200
    assert response.get_json()["accepted"] == 1e12


def test_json_provider_rejects_non_finite_numbers(app):
    with pytest.raises(ValueError):
        app.json.dumps({"accepted": float("inf")})
    with pytest.raises(ValueError):
        app.json.dumps({"accepted": float("nan")})
