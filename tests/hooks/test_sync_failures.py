"""The sync hook when something is wrong: every path keeps children or refuses, never deletes."""

from __future__ import annotations

import json
import time

import pytest

from hooks.config import HookConfig
from hooks.engine_client import EngineRejected, HttpEngine
from hooks.sync import CannotSync, sync
from tests.hooks.conftest import NOW, children_by_kind, condition, load_request
from tests.hooks.fakes import EngineServer, FakeEngine, unreachable_engine

LAST_APPLIED = "metacontroller.k8s.io/last-applied-configuration"


def previous_children(request: dict) -> list[dict]:
    """The children the hook returned last time, as Metacontroller recorded them."""
    kept = []
    for objects in request["children"].values():
        for child in objects.values():
            kept.append(json.loads(child["metadata"]["annotations"][LAST_APPLIED]))
    return kept


def as_set(children: list[dict]) -> set[str]:
    return {json.dumps(child, sort_keys=True) for child in children}


def names(children: list[dict]) -> set[tuple[str, str]]:
    return {(child["kind"], child["metadata"]["name"]) for child in children}


def steady_with(mutate) -> dict:
    request = load_request("sync-steady-state.json")
    mutate(request["parent"]["spec"])
    return request


INVALID_SPECS = [
    ("bad type", None, "spec.scheduler.targetError"),
    ("unknown policy", lambda s: s["scheduler"].update(policy="greedy"), "spec.scheduler.policy"),
    ("negative replicas", lambda s: s["target"]["replicas"].update(min=-1), "spec.target.replicas.min"),
    (
        "negative replicas string",
        lambda s: s["consumer"]["replicas"].update(min="-2"),
        "spec.consumer.replicas.min",
    ),
    (
        "min above max",
        lambda s: s["router"].update(replicas={"min": 5, "max": 2}),
        "spec.router.replicas.min",
    ),
    ("unknown field", lambda s: s["scheduler"].update(polcy="p100"), "spec.scheduler"),
    (
        "decimal string out of range",
        lambda s: s["scheduler"].update(throttleMin="7"),
        "spec.scheduler.throttleMin",
    ),
    ("boolean decimal", lambda s: s["scheduler"].update(targetError=True), "spec.scheduler.targetError"),
    (
        "credit band inverted",
        lambda s: s["scheduler"].update(creditMin=0.4, creditMax="0.1"),
        "spec.scheduler.creditMin",
    ),
    ("missing target", lambda s: s.pop("target"), "spec"),
]


@pytest.mark.parametrize(("case", "mutate", "field"), INVALID_SPECS, ids=[c[0] for c in INVALID_SPECS])
def test_invalid_spec_keeps_existing_children(config, case, mutate, field):
    request = load_request("sync-invalid-spec.json") if mutate is None else steady_with(mutate)
    engine = FakeEngine()
    response = sync(request, engine=engine, config=config, now=NOW)

    assert as_set(response["children"]) == as_set(previous_children(request))
    spec_valid = condition(response, "SpecValid")
    assert spec_valid["status"] == "False"
    assert spec_valid["reason"] == "InvalidSpec"
    assert field in spec_valid["message"]
    assert condition(response, "Ready")["status"] == "False"
    assert engine.calls == []  # an invalid spec is never sent to the engine


def test_invalid_spec_blanks_no_status_field(config):
    request = load_request("sync-invalid-spec.json")
    previous = request["parent"]["status"]
    response = sync(request, engine=FakeEngine(), config=config, now=NOW)
    for key, value in previous.items():
        if key not in ("conditions", "observedGeneration"):
            assert response["status"][key] == value, key
    assert response["status"]["observedGeneration"] == 4
    # Conditions this sync could not evaluate keep their last entry.
    assert condition(response, "EngineReachable") == next(
        c for c in previous["conditions"] if c["type"] == "EngineReachable"
    )


def test_engine_unreachable_renders_last_decision(config):
    request = load_request("sync-steady-state.json")
    response = sync(request, engine=unreachable_engine(), config=config, now=NOW)
    reachable = sync(request, engine=FakeEngine(), config=config, now=NOW)

    assert response["children"] == reachable["children"]
    engine = condition(response, "EngineReachable")
    assert engine["status"] == "False"
    assert engine["reason"] == "EngineUnavailable"
    assert "2026-12-04T20:01:00Z" in engine["message"]
    assert condition(response, "Ready")["status"] == "False"
    assert response["resyncAfterSeconds"] == config.retry_seconds
    assert response["status"]["ledger"] == request["parent"]["status"]["ledger"]
    # The stored decision has no forecast slots or diagnostics: their last values stay.
    assert response["status"]["forecastSchedule"] == request["parent"]["status"]["forecastSchedule"]
    assert response["status"]["diagnostics"] == request["parent"]["status"]["diagnostics"]


def test_slow_engine_answers_within_timeout():
    config = HookConfig(engine_timeout=0.3)
    request = load_request("sync-steady-state.json")
    with EngineServer(delay=3.0) as server:
        engine = HttpEngine(server.url, timeout=config.engine_timeout)
        started = time.perf_counter()
        response = sync(request, engine=engine, config=config, now=NOW)
        elapsed = time.perf_counter() - started
    assert elapsed < 1.5
    assert "timed out" in condition(response, "EngineReachable")["message"]
    assert len(response["children"]) == 12


@pytest.mark.parametrize("answer", ["empty", "error"])
def test_unusable_engine_answer_counts_as_unreachable(config, answer):
    request = load_request("sync-steady-state.json")
    with EngineServer(answer=answer) as server:
        response = sync(request, engine=HttpEngine(server.url, timeout=2), config=config, now=NOW)
    assert condition(response, "EngineReachable")["status"] == "False"
    assert len(response["children"]) == 12


def test_http_engine_decision_matches_fake(config):
    request = load_request("sync-first-three-flavours.json")
    with EngineServer() as server:
        over_http = sync(request, engine=HttpEngine(server.url, timeout=2), config=config, now=NOW)
    direct = sync(request, engine=FakeEngine(), config=config, now=NOW)
    assert over_http == direct


def test_no_decision_ever_keeps_existing_children(config):
    request = load_request("sync-steady-state.json")
    del request["parent"]["status"]["lastDecision"]
    response = sync(request, engine=unreachable_engine(), config=config, now=NOW)
    assert as_set(response["children"]) == as_set(previous_children(request))
    engine = condition(response, "EngineReachable")
    assert (engine["status"], engine["reason"]) == ("False", "NoDecision")
    assert response["resyncAfterSeconds"] == config.retry_seconds


def test_first_sync_without_engine_creates_nothing(config):
    request = load_request("sync-first-three-flavours.json")
    response = sync(request, engine=unreachable_engine(), config=config, now=NOW)
    assert response["children"] == []
    assert condition(response, "EngineReachable")["reason"] == "NoDecision"
    assert condition(response, "SpecValid")["status"] == "True"


def test_no_flavours_keeps_existing_children(config):
    request = load_request("sync-no-flavours.json")
    engine = FakeEngine()
    response = sync(request, engine=engine, config=config, now=NOW)
    assert as_set(response["children"]) == as_set(previous_children(request))
    flavours = condition(response, "FlavoursDiscovered")
    assert (flavours["status"], flavours["reason"]) == ("False", "NoFlavours")
    assert "carbonrouter/parent-service=checkout" in flavours["message"]
    assert engine.calls == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["metadata"]["labels"].update({"carbonstat.precision": "high"}), "is not a whole number"),
        (lambda d: d["metadata"]["labels"].update({"carbonstat.precision": "150"}), "outside 0-100"),
        (
            lambda d: d["metadata"]["annotations"].update({"carbonrouter.io/energy": "lots"}),
            "is not a number",
        ),
        (lambda d: d["spec"]["template"]["metadata"]["labels"].pop("carbonstat.precision"), "pod template"),
        (
            lambda d: [
                d["metadata"]["labels"].update({"carbonstat.precision": "50"}),
                d["spec"]["template"]["metadata"]["labels"].update({"carbonstat.precision": "50"}),
            ],
            "both have precision 50",
        ),
    ],
    ids=["word precision", "precision above 100", "word energy", "pod without label", "duplicate precision"],
)
def test_malformed_flavour_keeps_existing_children(config, mutate, expected):
    request = load_request("sync-steady-state.json")
    mutate(request["related"]["Deployment.apps/v1"]["checkout-high"])
    response = sync(request, engine=FakeEngine(), config=config, now=NOW)
    assert as_set(response["children"]) == as_set(previous_children(request))
    flavours = condition(response, "FlavoursDiscovered")
    assert (flavours["status"], flavours["reason"]) == ("False", "InvalidFlavour")
    assert expected in flavours["message"]
    assert "checkout-high" in flavours["message"] or "checkout-mid" in flavours["message"]


def test_engine_rejection_marks_spec_invalid(config):
    rejected = EngineRejected(
        "PUT /config/shop/checkout: invalid configuration",
        [{"field": "scheduler.carbonTarget", "message": "unknown carbonTarget 'mars'"}],
    )
    request = load_request("sync-steady-state.json")
    response = sync(request, engine=FakeEngine(error=rejected), config=config, now=NOW)
    spec_valid = condition(response, "SpecValid")
    assert (spec_valid["status"], spec_valid["reason"]) == ("False", "EngineRejected")
    assert "scheduler.carbonTarget" in spec_valid["message"]
    assert as_set(response["children"]) == as_set(previous_children(request))


def test_missing_status_with_children_renders_same_children(config):
    steady = load_request("sync-steady-state.json")
    stale = load_request("sync-steady-state.json")
    del stale["parent"]["status"]
    expected = sync(steady, engine=FakeEngine(), config=config, now=NOW)
    response = sync(stale, engine=FakeEngine(), config=config, now=NOW)

    assert response["children"] == expected["children"]
    assert names(response["children"]) == names(previous_children(stale))
    for key, value in steady["parent"]["status"].items():
        assert response["status"].get(key) not in (None, "", [], {}), f"status.{key} returned blank"
        if key not in ("conditions", "observedGeneration"):
            assert type(response["status"][key]) is type(value)


def test_missing_status_with_engine_down_refuses(config):
    request = load_request("sync-steady-state.json")
    del request["parent"]["status"]
    with pytest.raises(CannotSync, match="no parent.status") as refused:
        sync(request, engine=unreachable_engine(), config=config, now=NOW)
    assert refused.value.transient is True


def test_ceiling_below_minimum_is_clamped(config):
    request = load_request("sync-steady-state.json")
    request["parent"]["spec"]["target"]["replicas"] = {"min": 2, "max": 8}
    request["parent"]["spec"]["consumer"]["replicas"] = {"min": 0, "max": 6}
    engine = FakeEngine(ceilings={"router": 4, "consumer": 0, "target": 1})
    response = sync(request, engine=engine, config=config, now=NOW)

    for scaled in children_by_kind(response, "ScaledObject"):
        spec = scaled["spec"]
        assert spec["maxReplicaCount"] >= spec["minReplicaCount"], scaled["metadata"]["name"]
        assert spec["maxReplicaCount"] >= 1
    flavour = next(
        s for s in children_by_kind(response, "ScaledObject") if "flavour" in s["metadata"]["name"]
    )
    assert flavour["spec"]["maxReplicaCount"] == 2
    clamped = condition(response, "CeilingsClamped")
    assert (clamped["status"], clamped["reason"]) == ("True", "CeilingOutOfBounds")
    assert "flavour high ceiling 1 clamped to 2" in clamped["message"]
    assert "consumer ceiling 0 clamped to 1" in clamped["message"]
    assert response["status"]["effectiveReplicaCeilings"]["high"] == 2


def test_ceiling_above_maximum_is_clamped(config):
    request = load_request("sync-steady-state.json")
    engine = FakeEngine(ceilings={"router": 4, "consumer": 60, "target": 8})
    response = sync(request, engine=engine, config=config, now=NOW)
    consumer = next(
        s for s in children_by_kind(response, "ScaledObject") if s["metadata"]["name"].endswith("consumer")
    )
    assert consumer["spec"]["maxReplicaCount"] == 6
    assert "consumer ceiling 60 clamped to 6" in condition(response, "CeilingsClamped")["message"]


def test_missing_target_service_renders_but_not_ready(config):
    request = load_request("sync-steady-state.json")
    request["related"]["Service.v1"] = {}
    response = sync(request, engine=FakeEngine(), config=config, now=NOW)
    assert len(response["children"]) == 12
    ready = condition(response, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TargetServiceInvalid")
    assert "target Service checkout not found" in ready["message"]


def test_target_port_mismatch_is_reported(config):
    request = load_request("sync-steady-state.json")
    request["parent"]["spec"]["target"]["port"] = 9090
    response = sync(request, engine=FakeEngine(), config=config, now=NOW)
    ready = condition(response, "Ready")
    assert ready["reason"] == "TargetServiceInvalid"
    assert "has no port 9090 (ports: [8080])" in ready["message"]
