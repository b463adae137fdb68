"""`scheduler.options`: each policy accepts only the options it reads, with typed, bounded values."""

import copy

import pytest

from engine.policies import POLICIES
from tests.engine.conftest import CONFIG


def put_options(client, options, *, policy="credit-greedy"):
    body = copy.deepcopy(CONFIG)
    body["scheduler"].update(policy=policy, options=options)
    return client.put("/config/default/options", json=body)


def details(response) -> dict[str, str]:
    return {detail["field"]: detail["message"] for detail in response.get_json()["details"]}


def test_unknown_option_lists_valid_ones(client):
    response = put_options(client, {"foo": 1}, policy="forecast-aware")
    assert response.status_code == 400
    message = details(response)["scheduler.options.foo"]
    for key in ("maxAllowance", "deadBand", "trendGain", "trendSlots"):
        assert key in message


def test_option_of_another_policy_rejected(client):
    response = put_options(client, {"hedge": 0.01}, policy="credit-greedy")
    assert response.status_code == 400
    assert "maxAllowance" in details(response)["scheduler.options.hedge"]


def test_policy_without_options_rejects_any(client):
    response = put_options(client, {"maxAllowance": 0.5}, policy="p100")
    assert response.status_code == 400
    assert "no options" in details(response)["scheduler.options.maxAllowance"]


@pytest.mark.parametrize("policy, options, field", [
    ("credit-greedy", {"maxAllowance": "x"}, "maxAllowance"),
    ("credit-greedy", {"maxAllowance": -5}, "maxAllowance"),
    ("credit-greedy", {"maxAllowance": 1.5}, "maxAllowance"),
    ("credit-greedy", {"maxAllowance": True}, "maxAllowance"),
    ("forecast-aware", {"deadBand": "nan"}, "deadBand"),
    ("forecast-aware", {"trendSlots": 2.5}, "trendSlots"),
    ("forecast-aware", {"trendSlots": 0}, "trendSlots"),
    ("forecast-aware", {"trendGain": 1e308}, "trendGain"),
    ("forecast-aware-global", {"lookAheadSlots": "many"}, "lookAheadSlots"),
    ("forecast-optimal", {"hedge": 2}, "hedge"),
    ("forecast-optimal", {"hedge": [0.1]}, "hedge"),
])
def test_malformed_option_value_names_key(client, policy, options, field):
    response = put_options(client, options, policy=policy)
    assert response.status_code == 400
    assert set(details(response)) == {f"scheduler.options.{field}"}


@pytest.mark.parametrize("key", ["demandError", "windowEmissions"])
def test_engine_set_option_rejected(client, key):
    response = put_options(client, {key: 0.1}, policy="forecast-optimal")
    assert response.status_code == 400
    assert "set by the engine" in details(response)[f"scheduler.options.{key}"]


def test_every_bad_option_named_at_once(client):
    response = put_options(client, {"foo": 1, "maxAllowance": "x", "deadBand": -1}, policy="forecast-aware")
    assert response.status_code == 400
    assert set(details(response)) == {"scheduler.options.foo", "scheduler.options.maxAllowance",
                                      "scheduler.options.deadBand"}


def test_valid_options_accepted_and_normalised(app, client):
    response = put_options(client, {"maxAllowance": "0.5", "trendSlots": "4", "deadBand": 0.1,
                                    "trendGain": None}, policy="forecast-aware")
    assert response.status_code == 200, response.get_json()
    session = app.extensions["engine.store"].get("default", "options")
    assert session.config.scheduler.options == {"maxAllowance": 0.5, "trendSlots": 4, "deadBand": 0.1}


def test_max_allowance_option_caps_downgrade(client):
    capped = put_options(client, {"maxAllowance": 0.0}).get_json()
    assert capped["flavourWeights"]["high"] == 100


def test_every_registered_policy_declares_options():
    for name, policy_class in POLICIES.items():
        for key, option in policy_class.accepted_options.items():
            assert option.low <= option.default <= option.high, (name, key)
