"""Sessions: validity, manual override expiry, restart restoration and safe decisions."""

import copy
import logging
from datetime import timedelta

import pytest

from tests.engine.conftest import CONFIG


def put(client, body=None, name="carbonstat"):
    response = client.put(f"/config/default/{name}", json=body or CONFIG)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_decision_cached_until_valid_until(configured, source, clock):
    calls = source.calls
    configured.get("/schedule/default/carbonstat")
    clock.advance(seconds=59)
    configured.get("/schedule/default/carbonstat")
    assert source.calls == calls
    clock.advance(seconds=1)
    decision = configured.get("/schedule/default/carbonstat").get_json()
    assert source.calls == calls + 1
    assert decision["evaluatedAt"] == "2026-12-04T20:01:00Z"


def test_valid_until_stops_at_slot_end(configured, clock):
    clock.advance(minutes=29, seconds=30)
    decision = configured.get("/schedule/default/carbonstat").get_json()
    assert decision["validUntil"] == "2026-12-04T20:30:00Z"


def test_valid_until_scales_with_replay_speed(app, client, source, clock):
    source.time_scale = 60.0  # one wall second = one source minute; a slot lasts 30 wall seconds
    body = copy.deepcopy(CONFIG)
    body["scheduler"]["validFor"] = 600
    decision = put(client, body)
    assert decision["validUntil"] == "2026-12-04T20:00:30Z"


def test_manual_override_expires_back_to_policy(configured, clock):
    response = configured.post("/schedule/default/carbonstat/manual",
                               json={"flavourWeights": {"high": 70, "low": 30}, "ttlSeconds": 120})
    assert response.status_code == 200
    manual = response.get_json()
    assert manual["policy"] == "manual"
    assert manual["flavourWeights"] == {"high": 70, "mid": 0, "low": 30}
    assert manual["manualUntil"] == "2026-12-04T20:02:00Z"

    clock.advance(seconds=119)
    assert configured.get("/schedule/default/carbonstat").get_json()["policy"] == "manual"
    clock.advance(seconds=1)
    after = configured.get("/schedule/default/carbonstat").get_json()
    assert after["policy"] == "credit-greedy"
    assert "manualUntil" not in after


def test_manual_validity_never_outlasts_ttl(configured):
    decision = configured.post("/schedule/default/carbonstat/manual",
                               json={"flavourWeights": {"high": 100}, "ttlSeconds": 10}).get_json()
    assert decision["validUntil"] == "2026-12-04T20:00:10Z"


def test_manual_throttle_sets_ceilings(configured):
    decision = configured.post("/schedule/default/carbonstat/manual",
                               json={"flavourWeights": {"high": 100}, "ttlSeconds": 60,
                                     "throttle": "0.5"}).get_json()
    assert decision["processing"]["throttle"] == 0.5
    assert decision["processing"]["ceilings"] == {"router": 5, "consumer": 2, "target": 5}


@pytest.mark.parametrize("body, field", [
    ({"flavourWeights": {"high": 70, "low": 20}, "ttlSeconds": 60}, "flavourWeights"),
    ({"flavourWeights": {"high": 70.5, "low": 29.5}, "ttlSeconds": 60}, "flavourWeights.high"),
    ({"flavourWeights": {"ultra": 100}, "ttlSeconds": 60}, "flavourWeights.ultra"),
    ({"flavourWeights": {"high": 100}}, "ttlSeconds"),
    ({"flavourWeights": {"high": 100}, "ttlSeconds": 999999}, "ttlSeconds"),
    ({"flavourWeights": {"high": 100}, "ttlSeconds": -5}, "ttlSeconds"),
    ({"flavourWeights": {"high": 100}, "ttlSeconds": 60, "throttle": 2}, "throttle"),
])
def test_invalid_manual_rejected_and_policy_kept(configured, body, field):
    response = configured.post("/schedule/default/carbonstat/manual", json=body)
    assert response.status_code == 400
    assert field in {detail["field"] for detail in response.get_json()["details"]}
    assert configured.get("/schedule/default/carbonstat").get_json()["policy"] == "credit-greedy"


def test_manual_for_disabled_flavour_rejected(client):
    body = copy.deepcopy(CONFIG)
    body["flavours"][2]["enabled"] = False
    put(client, body)
    response = client.post("/schedule/default/carbonstat/manual",
                           json={"flavourWeights": {"high": 50, "low": 50}, "ttlSeconds": 60})
    assert response.status_code == 400


def test_manual_cleared_by_delete(configured):
    configured.post("/schedule/default/carbonstat/manual", json={"flavourWeights": {"high": 100},
                                                                 "ttlSeconds": 600})
    decision = configured.delete("/schedule/default/carbonstat/manual").get_json()
    assert decision["policy"] == "credit-greedy"


def test_restart_restores_ledger_from_state(app, client, clock):
    body = copy.deepcopy(CONFIG)
    body["state"] = {"ledger": {"balance": 0.3, "velocity": 0.02, "updatedAt": "2026-12-04T19:59:00Z"}}
    decision = put(client, body)
    assert decision["credits"]["balance"] == pytest.approx(0.3)
    assert decision["credits"]["velocity"] == pytest.approx(0.02)
    assert decision["state"]["ledger"]["updatedAt"] == "2026-12-04T19:59:00Z"


def test_restart_restores_running_manual_override(client):
    body = copy.deepcopy(CONFIG)
    body["state"] = {"ledger": {"balance": 0.1},
                     "manual": {"flavourWeights": {"high": 60, "mid": 40}, "until": "2026-12-04T20:05:00Z"}}
    decision = put(client, body)
    assert decision["policy"] == "manual"
    assert decision["flavourWeights"] == {"high": 60, "mid": 40, "low": 0}


def test_newer_in_memory_ledger_wins(configured, clock):
    configured.post("/feedback/default/carbonstat", json={"counts": {"high": 10}})  # balance 0.1 at 20:00
    body = copy.deepcopy(CONFIG)
    body["state"] = {"ledger": {"balance": -0.4, "velocity": -0.1, "updatedAt": "2026-12-04T19:00:00Z"}}
    decision = put(configured, body)
    assert decision["credits"]["balance"] == pytest.approx(0.1)


def test_newer_stored_state_replaces_memory(configured, clock):
    configured.post("/feedback/default/carbonstat", json={"counts": {"high": 10}})
    body = copy.deepcopy(CONFIG)
    body["state"] = {"ledger": {"balance": -0.4, "velocity": -0.1, "updatedAt": "2026-12-04T20:00:30Z"}}
    decision = put(configured, body)
    assert decision["credits"]["balance"] == pytest.approx(-0.4)


def test_decision_state_round_trips_through_restart(app, configured, clock, source):
    from engine.app import create_app
    from engine.config import EngineConfig
    from tests.engine.fakes import fake_factory

    configured.post("/feedback/default/carbonstat", json={"counts": {"high": 30, "low": 10}})
    stored = configured.get("/schedule/default/carbonstat").get_json()["state"]

    restarted = create_app(EngineConfig(source_factory=fake_factory(source), clock=clock,
                                        demand_forecast=False)).test_client()
    body = copy.deepcopy(CONFIG)
    body["state"] = stored
    decision = put(restarted, body)
    assert decision["credits"]["balance"] == pytest.approx(stored["ledger"]["balance"])
    assert decision["state"]["ledger"] == stored["ledger"]


def test_malformed_state_rejected_without_change(configured):
    body = copy.deepcopy(CONFIG)
    body["scheduler"]["policy"] = "p100"
    body["state"] = {"ledger": {"balance": "plenty"}}
    response = configured.put("/config/default/carbonstat", json=body)
    assert response.status_code == 400
    assert {detail["field"] for detail in response.get_json()["details"]} == {"state"}
    assert configured.get("/schedule/default/carbonstat").get_json()["policy"] == "credit-greedy"


def test_unavailable_carbon_gives_safe_target_mix(client, source):
    source.available = False
    decision = put(client)
    assert decision["carbon"]["available"] is False
    assert decision["processing"]["throttle"] == 1.0
    assert decision["diagnostics"]["carbonBlind"] is True
    # The static mix meets the target (90 % precision) up to integer rounding.
    assert decision["avgPrecision"] == pytest.approx(90.0, abs=1.0)


def test_dirty_grid_throttles_ceilings(client, source):
    source.intensities = [220.0] * 96
    decision = put(client)
    # intensityRatio (250 - 220) / 150 = 0.2; creditsRatio 0.5; throttle 0.2.
    assert decision["processing"]["throttle"] == pytest.approx(0.2)
    assert decision["processing"]["ceilings"] == {"router": 5, "consumer": 1, "target": 2}


def test_one_log_line_per_decision_change(configured, clock, caplog):
    caplog.set_level(logging.INFO, logger="engine.session")
    for _ in range(5):
        clock.advance(seconds=60)
        configured.get("/schedule/default/carbonstat")
    changes = [record for record in caplog.records if "decision changed" in record.getMessage()]
    assert changes == []
    configured.post("/schedule/default/carbonstat/manual", json={"flavourWeights": {"high": 100},
                                                                 "ttlSeconds": 60})
    changes = [record for record in caplog.records if "decision changed" in record.getMessage()]
    assert len(changes) == 1
    assert "schedule=default/carbonstat" in changes[0].getMessage()


def test_reconfigure_changes_policy_immediately(configured):
    body = copy.deepcopy(CONFIG)
    body["scheduler"]["policy"] = "p100"
    decision = put(configured, body)
    assert decision["policy"] == "p100"
    assert decision["flavourWeights"] == {"high": 100, "mid": 0, "low": 0}


def test_plan_threshold_raises_throttle_floor(client, source):
    from engine.app import create_app
    from engine.config import EngineConfig
    from engine.policies.base import Policy, PolicyResult
    from tests.engine.fakes import Clock, fake_factory

    class PlanningPolicy(Policy):
        name = "credit-greedy"

        def decide(self, ctx):
            return PolicyResult(shares={"high": 1.0}, diagnostics={"planIntensityThreshold": 230.0})

    source.intensities = [220.0] * 96
    app = create_app(EngineConfig(source_factory=fake_factory(source), clock=Clock(), demand_forecast=False,
                                  policy_factory=lambda name: PlanningPolicy()))
    decision = put(app.test_client())
    # 220 is below the plan's threshold 230, so nothing is held back.
    assert decision["processing"]["throttle"] == 1.0
    assert decision["diagnostics"]["throttleIntensityFloor"] == 230.0


def test_manual_restored_from_last_decision(client):
    body = copy.deepcopy(CONFIG)
    body["state"] = {"ledger": {"balance": 0.0},
                     "lastDecision": {"policy": "manual", "flavourWeights": {"high": 80, "low": 20},
                                      "state": {"manual": {"flavourWeights": {"high": 80, "low": 20},
                                                           "until": "2026-12-04T20:10:00Z"}}}}
    decision = put(client, body)
    assert decision["policy"] == "manual"
    assert decision["manualUntil"] == "2026-12-04T20:10:00Z"


def test_cleared_manual_not_restored_from_old_status(configured):
    manual = configured.post("/schedule/default/carbonstat/manual",
                             json={"flavourWeights": {"high": 100}, "ttlSeconds": 600}).get_json()
    stored = manual["state"]
    configured.delete("/schedule/default/carbonstat/manual")
    body = copy.deepcopy(CONFIG)
    body["state"] = stored
    assert put(configured, body)["policy"] == "credit-greedy"


def test_repeated_sync_with_same_state_logs_once(client, caplog):
    caplog.set_level(logging.INFO, logger="engine.session")
    body = copy.deepcopy(CONFIG)
    body["state"] = {"ledger": {"balance": 0.2, "updatedAt": "2026-12-04T19:59:00Z"}}
    for _ in range(3):
        put(client, body)
    restored = [record for record in caplog.records if "state restored" in record.getMessage()]
    assert len(restored) == 1


def test_restart_with_same_last_decision_logs_no_change(client, caplog):
    first = put(client)
    from engine.app import create_app
    from engine.config import EngineConfig
    from tests.engine.fakes import Clock, FakeSource, fake_factory

    restarted = create_app(EngineConfig(source_factory=fake_factory(FakeSource([200.0] * 96)), clock=Clock(),
                                        demand_forecast=False)).test_client()
    caplog.set_level(logging.INFO, logger="engine.session")
    caplog.clear()
    body = copy.deepcopy(CONFIG)
    body["state"] = {"ledger": first["state"]["ledger"], "lastDecision": first}
    put(restarted, body)
    assert not [record for record in caplog.records if "decision changed" in record.getMessage()]


def test_stale_snapshot_with_ended_slot_uses_valid_for(app, client, clock):
    from engine.model import CarbonSnapshot
    from tests.engine.fakes import slots_from

    class StaleSource:
        name = "stale"
        time_scale = 1.0

        def source_now(self, wall_now):
            return wall_now

        def snapshot(self, now, *, horizon):
            old = slots_from(now - timedelta(hours=2), [180.0, 190.0])
            return CarbonSnapshot(now=now, slots=old, source="stale", stale=True)

    from engine.app import create_app
    from engine.config import EngineConfig

    stale_app = create_app(EngineConfig(source_factory=lambda target, **_: StaleSource(), clock=clock,
                                        demand_forecast=False))
    decision = put(stale_app.test_client())
    assert decision["carbon"]["stale"] is True
    assert decision["validUntil"] == "2026-12-04T20:01:00Z"


def test_global_policy_reads_window_emissions(client, clock):
    body = copy.deepcopy(CONFIG)
    body["scheduler"]["policy"] = "forecast-aware-global"
    put(client, body)
    # All traffic on the most precise flavour emits the baseline, above the target mix's plan.
    client.post("/feedback/default/carbonstat", json={"counts": {"high": 100}})
    clock.advance(seconds=61)
    decision = client.get("/schedule/default/carbonstat").get_json()
    assert decision["diagnostics"]["emissionsFactor"] > 1.0


def test_policy_diagnostics_made_json_safe(client, source):
    import numpy as np

    from engine.app import create_app
    from engine.config import EngineConfig
    from engine.policies.base import Policy, PolicyResult
    from tests.engine.fakes import Clock, fake_factory

    class NumpyPolicy(Policy):
        name = "credit-greedy"

        def decide(self, ctx):
            return PolicyResult(shares={"high": 1.0},
                                diagnostics={"ratio": np.float64(0.5), "missing": float("nan"),
                                             "plan": (np.int64(3), float("inf"))})

    app = create_app(EngineConfig(source_factory=fake_factory(source), clock=Clock(), demand_forecast=False,
                                  policy_factory=lambda name: NumpyPolicy()))
    response = app.test_client().put("/config/default/carbonstat", json=CONFIG)
    assert response.status_code == 200
    assert response.get_json()["diagnostics"] == {"ratio": 0.5, "missing": None, "plan": [3.0, None]}
    assert "NaN" not in response.get_data(as_text=True)


def test_manual_without_weights_names_field(configured):
    response = configured.post("/schedule/default/carbonstat/manual", json={"ttlSeconds": 60})
    assert response.status_code == 400
    details = response.get_json()["details"]
    assert details == [{"field": "flavourWeights",
                        "message": "missing; give whole-number weights per flavour summing to 100"}]
