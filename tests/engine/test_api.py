"""HTTP API: configuration, validation errors, schedules, feedback and error shapes."""

import copy

import pytest

from tests.engine.conftest import CONFIG


def config_with(**scheduler):
    body = copy.deepcopy(CONFIG)
    body["scheduler"].update(scheduler)
    return body


def fields(response) -> set[str]:
    return {detail["field"] for detail in response.get_json()["details"]}


def test_put_config_returns_decision(configured):
    decision = configured.get("/schedule/default/carbonstat").get_json()
    assert decision["policy"] == "credit-greedy"
    assert sum(decision["flavourWeights"].values()) == 100
    assert decision["credits"] == {"balance": 0.0, "velocity": 0.0, "target": 0.1, "min": -0.5, "max": 0.5}
    assert decision["processing"]["ceilings"]["router"] == 5
    assert decision["carbon"]["now"] == 200.0
    assert decision["carbon"]["source"] == "fake"
    assert decision["validUntil"] == "2026-12-04T20:01:00Z"
    assert [flavour["precision"] for flavour in decision["flavours"]] == [100, 50, 25]


def test_string_numbers_accepted(client):
    body = config_with(targetError="0.15", creditWindow="24h", carbonTimeout="5s", validFor="30")
    response = client.put("/config/default/strings", json=body)
    assert response.status_code == 200
    assert response.get_json()["credits"]["target"] == 0.15


def test_unknown_policy_lists_valid_ones(client):
    response = client.put("/config/default/carbonstat", json=config_with(policy="greenest"))
    assert response.status_code == 400
    detail = response.get_json()["details"][0]
    assert detail["field"] == "scheduler.policy"
    for name in ("p100", "random", "round-robin", "credit-greedy", "forecast-aware", "forecast-aware-global"):
        assert name in detail["message"]


def test_every_bad_field_is_named(client):
    body = config_with(targetError="1.5", creditMin=1, creditMax=0, throttleMin=2, evaluator="proxy",
                       throttleIntensityFloor=300, throttleIntensityCeiling=200, validFor="soon")
    body["flavours"][1]["precision"] = 120
    body["flavours"][2]["energy"] = 0
    body["componentBounds"]["target"] = {"min": 5, "max": 2}
    response = client.put("/config/default/carbonstat", json=body)
    assert response.status_code == 400
    assert fields(response) == {
        "scheduler.targetError", "scheduler.creditMin", "scheduler.throttleMin", "scheduler.evaluator",
        "scheduler.throttleIntensityFloor", "scheduler.validFor", "flavours[1].precision",
        "flavours[2].energy", "componentBounds.target"}


@pytest.mark.parametrize("flavours, field", [
    ([], "flavours"),
    ([{"name": "high", "precision": 100, "enabled": False}], "flavours"),
    ([{"name": "high", "precision": 100}, {"name": "high", "precision": 50}], "flavours[1].name"),
    ([{"name": "High!", "precision": 100}], "flavours[0].name"),
    ([{"name": "high"}], "flavours[0].precision"),
    ([{"name": "high", "precision": 100, "enabled": "maybe"}], "flavours[0].enabled"),
])
def test_invalid_flavours_rejected(client, flavours, field):
    body = copy.deepcopy(CONFIG)
    body["flavours"] = flavours
    response = client.put("/config/default/carbonstat", json=body)
    assert response.status_code == 400
    assert field in fields(response)


def test_negative_bounds_rejected(client):
    body = copy.deepcopy(CONFIG)
    body["componentBounds"]["consumer"] = {"min": -1, "max": 3}
    response = client.put("/config/default/carbonstat", json=body)
    assert response.status_code == 400
    assert fields(response) == {"componentBounds.consumer"}


def test_unknown_scheduler_field_rejected(client):
    response = client.put("/config/default/carbonstat", json=config_with(targetErorr=0.1))
    assert response.status_code == 400
    assert fields(response) == {"scheduler.targetErorr"}


def test_unknown_carbon_target_rejected(client):
    response = client.put("/config/default/carbonstat", json=config_with(carbonTarget="moon:1"))
    assert response.status_code == 400
    assert fields(response) == {"scheduler.carbonTarget"}
    assert "valid forms" in response.get_json()["details"][0]["message"]


def test_invalid_config_keeps_existing_session(configured):
    configured.put("/config/default/carbonstat", json=config_with(policy="nope"))
    decision = configured.get("/schedule/default/carbonstat").get_json()
    assert decision["policy"] == "credit-greedy"


def test_defaults_apply_when_scheduler_absent(client):
    body = {"flavours": CONFIG["flavours"]}
    decision = client.put("/config/default/minimal", json=body).get_json()
    assert decision["policy"] == "credit-greedy"
    assert decision["credits"]["target"] == 0.1
    assert decision["processing"]["ceilings"] == {"router": 1, "consumer": 1, "target": 1}


def test_unknown_schedule_is_404(client):
    response = client.get("/schedule/default/missing")
    assert response.status_code == 404
    assert "PUT /config/default/missing" in response.get_json()["error"]


def test_default_schedule_served(configured):
    response = configured.get("/schedule")
    assert response.status_code == 200
    assert response.get_json()["name"] == "carbonstat"


def test_non_json_body_is_415(client):
    response = client.put("/config/default/carbonstat", data="policy=p100",
                          content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "JSON" in response.get_json()["error"]


def test_malformed_json_is_400(client):
    response = client.put("/config/default/carbonstat", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "request body is not valid JSON"


def test_wrong_method_is_405_json(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.get_json()["status"] == 405
    assert "GET" in response.headers["Allow"]


def test_unknown_path_is_404_json(client):
    response = client.get("/nothing/here")
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_invalid_namespace_rejected(client):
    response = client.put("/config/Bad_NS/carbonstat", json=CONFIG)
    assert response.status_code == 400
    assert fields(response) == {"namespace"}


def test_feedback_updates_ledger(configured):
    # 50 high + 50 low: mean precision 0.625, error 0.375, delta 0.1 - 0.375 = -0.275.
    response = configured.post("/feedback/default/carbonstat", json={"counts": {"high": 50, "low": "50"}})
    assert response.status_code == 200
    body = response.get_json()
    assert body["accepted"] == 100
    assert body["credits"]["balance"] == pytest.approx(-0.275)
    decision = configured.get("/schedule/default/carbonstat").get_json()
    assert decision["credits"]["balance"] == pytest.approx(-0.275)
    assert decision["state"]["ledger"]["balance"] == pytest.approx(-0.275)


def test_feedback_rejects_unknown_flavour_and_negative_count(configured):
    response = configured.post("/feedback/default/carbonstat", json={"counts": {"ultra": 5, "high": -1}})
    assert response.status_code == 400
    assert fields(response) == {"counts.ultra", "counts.high"}
    decision = configured.get("/schedule/default/carbonstat").get_json()
    assert decision["credits"]["balance"] == 0.0


def test_feedback_for_unknown_schedule_is_404(client):
    assert client.post("/feedback/default/missing", json={"counts": {}}).status_code == 404


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ok"
    assert "credit-greedy" in ready["policies"]


def test_zero_cache_ttl_accepted_zero_timeout_rejected(client):
    assert client.put("/config/default/ttl", json=config_with(carbonCacheTTL="0")).status_code == 200
    response = client.put("/config/default/ttl", json=config_with(carbonTimeout=0))
    assert response.status_code == 400
    assert fields(response) == {"scheduler.carbonTimeout"}
