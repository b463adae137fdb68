"""The sync hook on well-formed requests: what it renders, sends to the engine and reports."""

from __future__ import annotations

import pytest

from hooks.engine_client import InProcessEngine
from hooks.sync import customize, sync
from tests.hooks.conftest import NOW, child_named, children_by_kind, condition, load_request
from tests.hooks.fakes import FakeEngine

QUEUES = [
    "shop.checkout.queue.precision-100",
    "shop.checkout.queue.precision-50",
    "shop.checkout.queue.precision-25",
]


@pytest.fixture
def first_sync(config):
    engine = FakeEngine()
    response = sync(load_request("sync-first-three-flavours.json"), engine=engine, config=config, now=NOW)
    return response, engine


def test_three_flavours_render_every_child(first_sync):
    response, _ = first_sync
    names = sorted((c["kind"], c["metadata"]["name"]) for c in response["children"])
    assert names == sorted(
        [
            ("TriggerAuthentication", "checkout-rabbitmq"),
            ("Deployment", "checkout-router"),
            ("Service", "checkout-router"),
            ("ScaledObject", "checkout-router"),
            ("Deployment", "checkout-consumer"),
            ("Service", "checkout-consumer"),
            ("ScaledObject", "checkout-consumer"),
            ("ScaledObject", "checkout-flavour-checkout-high"),
            ("ScaledObject", "checkout-flavour-checkout-mid"),
            ("ScaledObject", "checkout-flavour-checkout-low"),
            ("DestinationRule", "checkout"),
            ("VirtualService", "checkout"),
        ]
    )


def test_engine_receives_flavours_bounds_and_scheduler(first_sync):
    _, engine = first_sync
    assert len(engine.calls) == 1
    namespace, name, body = engine.calls[0]
    assert (namespace, name) == ("shop", "checkout")
    assert body["flavours"] == [
        {"name": "high", "precision": 100, "energy": 1.0, "enabled": True},
        {"name": "mid", "precision": 50, "energy": 0.5, "enabled": True},
        {"name": "low", "precision": 25, "energy": 0.25, "enabled": True},
    ]
    assert body["componentBounds"] == {
        "router": {"min": 1, "max": 4},
        "consumer": {"min": 1, "max": 6},
        "target": {"min": 1, "max": 8},
    }
    assert body["scheduler"]["policy"] == "credit-greedy"
    assert body["scheduler"]["targetError"] == 0.1
    assert "state" not in body  # a first sync has no ledger to restore


def test_flavour_scaledobjects_use_target_ceiling(first_sync):
    response, _ = first_sync
    # Fake throttle 0.5: target ceiling max(1, floor(8 * 0.5)) = 4.
    for flavour in ("high", "mid", "low"):
        scaled = child_named(response, "ScaledObject", f"checkout-flavour-checkout-{flavour}")
        assert scaled["spec"]["scaleTargetRef"]["name"] == f"checkout-{flavour}"
        assert scaled["spec"]["minReplicaCount"] == 1
        assert scaled["spec"]["maxReplicaCount"] == 4


def test_flavour_scaledobject_triggers_on_its_own_queue(first_sync):
    response, _ = first_sync
    scaled = child_named(response, "ScaledObject", "checkout-flavour-checkout-mid")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"] == {
        "queueName": "shop.checkout.queue.precision-50",
        "mode": "QueueLength",
        "value": "10",
        "protocol": "amqp",
    }
    assert trigger["authenticationRef"] == {"name": "checkout-rabbitmq"}


def test_consumer_scales_on_every_flavour_queue(first_sync):
    response, _ = first_sync
    scaled = child_named(response, "ScaledObject", "checkout-consumer")
    assert [t["metadata"]["queueName"] for t in scaled["spec"]["triggers"]] == QUEUES
    assert {t["metadata"]["value"] for t in scaled["spec"]["triggers"]} == {"25"}
    assert scaled["spec"]["maxReplicaCount"] == 3  # floor(6 * 0.5)


def test_router_scales_on_cpu_up_to_its_max(first_sync):
    response, _ = first_sync
    scaled = child_named(response, "ScaledObject", "checkout-router")
    assert scaled["spec"]["triggers"] == [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70", "containerName": "router"}}
    ]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 4)


def test_keda_scaled_deployments_have_no_replicas(first_sync):
    response, _ = first_sync
    deployments = children_by_kind(response, "Deployment")
    assert len(deployments) == 2
    for deployment in deployments:
        assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]


def test_workload_env_points_at_engine_and_secret(first_sync):
    response, _ = first_sync
    router = child_named(response, "Deployment", "checkout-router")
    env = {item["name"]: item for item in router["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RABBITMQ_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "carbonrouter-rabbitmq", "key": "url"}
    }
    assert "value" not in env["RABBITMQ_URL"]
    assert env["FLAVOURS"]["value"] == "high:100,mid:50,low:25"
    assert env["SCHEDULE_NAMESPACE"]["value"] == "shop"
    assert env["SCHEDULE_NAME"]["value"] == "checkout"
    assert env["SERVICE_NAME"]["value"] == "checkout"
    assert env["ENGINE_URL"]["value"].startswith("http://")
    assert env["REQUEST_TIMEOUT"]["value"] == "20"

    consumer = child_named(response, "Deployment", "checkout-consumer")
    consumer_env = {i["name"]: i for i in consumer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert consumer_env["TARGET_URL"]["value"] == "http://checkout.shop.svc.cluster.local:8080"
    assert consumer_env["CONSUMER_PREFETCH"]["value"] == "8"


def test_destination_rule_has_one_subset_per_precision(first_sync):
    response, _ = first_sync
    rule = child_named(response, "DestinationRule", "checkout")
    assert rule["spec"]["host"] == "checkout.shop.svc.cluster.local"
    assert rule["spec"]["subsets"] == [
        {"name": "precision-100", "labels": {"carbonstat.precision": "100"}},
        {"name": "precision-50", "labels": {"carbonstat.precision": "50"}},
        {"name": "precision-25", "labels": {"carbonstat.precision": "25"}},
    ]


def test_virtual_service_routes_header_then_default(first_sync):
    response, _ = first_sync
    routes = child_named(response, "VirtualService", "checkout")["spec"]["http"]
    assert [r["name"] for r in routes] == ["precision-100", "precision-50", "precision-25", "default"]
    assert routes[1]["match"] == [
        {"headers": {"x-carbonrouter": {"exact": "50"}}},
        {"headers": {"x-carbonrouter": {"exact": "mid"}}},
    ]
    assert routes[1]["route"][0]["destination"] == {
        "host": "checkout.shop.svc.cluster.local",
        "subset": "precision-50",
        "port": {"number": 8080},
    }
    assert "match" not in routes[-1]
    assert routes[-1]["route"][0]["destination"]["subset"] == "precision-100"


def test_status_carries_reference_fields(first_sync):
    response, _ = first_sync
    status = response["status"]
    assert status["flavours"][0] == {
        "name": "high",
        "precision": 100,
        "weight": 60,
        "energy": 1.0,
        "deployment": "checkout-high",
        "queue": "shop.checkout.queue.precision-100",
    }
    assert [f["weight"] for f in status["flavours"]] == [60, 25, 15]
    assert status["activePolicy"] == "credit-greedy"
    assert status["validUntil"] == "2026-12-04T20:01:00Z"
    assert status["creditBalance"] == 0.12
    assert status["creditVelocity"] == 0.01
    assert status["processingThrottle"] == 0.5
    assert status["effectiveReplicaCeilings"] == {"router": 4, "consumer": 3, "high": 4, "mid": 4, "low": 4}
    assert status["carbonForecastNow"] == 120
    assert status["carbonForecastNext"] == 135
    assert len(status["forecastSchedule"]) == 2
    assert status["diagnostics"] == {"allowance": 0.4}
    assert status["ledger"] == {"balance": 0.12, "velocity": 0.01, "updatedAt": "2026-12-04T20:00:00Z"}
    assert status["lastDecision"]["flavourWeights"] == {"high": 60, "mid": 25, "low": 15}
    assert "slots" not in status["lastDecision"]["carbon"]
    assert status["observedGeneration"] == 1


def test_first_sync_conditions(first_sync):
    response, _ = first_sync
    assert condition(response, "SpecValid")["status"] == "True"
    assert condition(response, "FlavoursDiscovered")["status"] == "True"
    assert condition(response, "EngineReachable")["status"] == "True"
    assert condition(response, "CeilingsClamped")["status"] == "False"
    ready = condition(response, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ChildrenPending"  # nothing exists yet on a first sync
    assert ready["observedGeneration"] == 1


def test_resync_follows_valid_until(first_sync):
    response, _ = first_sync
    assert response["resyncAfterSeconds"] == 60.0  # validUntil is NOW + 60 s


def test_steady_state_is_ready(config):
    response = sync(load_request("sync-steady-state.json"), engine=FakeEngine(), config=config, now=NOW)
    ready = condition(response, "Ready")
    assert ready["status"] == "True"
    assert ready["observedGeneration"] == 3


def test_steady_state_sends_stored_ledger(config):
    engine = FakeEngine()
    request = load_request("sync-steady-state.json")
    sync(request, engine=engine, config=config, now=NOW)
    state = engine.calls[0][2]["state"]
    assert state["ledger"] == request["parent"]["status"]["ledger"]
    assert state["lastDecision"]["validUntil"] == "2026-12-04T20:01:00Z"


def test_reference_spec_with_strings_is_normalised(config):
    engine = FakeEngine()
    response = sync(load_request("sync-reference-strings.json"), engine=engine, config=config, now=NOW)
    assert condition(response, "SpecValid")["status"] == "True"
    body = engine.calls[0][2]
    assert body["scheduler"]["targetError"] == 0.15
    assert body["scheduler"]["creditMin"] == -0.4
    assert body["scheduler"]["creditWindow"] == 300
    assert body["scheduler"]["throttleIntensityCeiling"] == 240.0
    assert body["componentBounds"]["target"] == {"min": 1, "max": 8}


def test_reference_labels_discover_flavours_with_defaults(config):
    engine = FakeEngine()
    response = sync(load_request("sync-reference-strings.json"), engine=engine, config=config, now=NOW)
    # Only carbonstat.precision + app labels: names and energies come from the documented defaults.
    assert engine.calls[0][2]["flavours"] == [
        {"name": "precision-100", "precision": 100, "energy": 1.0, "enabled": True},
        {"name": "precision-50", "precision": 50, "energy": 0.5, "enabled": True},
        {"name": "precision-25", "precision": 25, "energy": 0.25, "enabled": True},
    ]
    assert len(children_by_kind(response, "ScaledObject")) == 5


def test_reference_spec_resync_capped_by_discovery_interval(config):
    engine = FakeEngine(valid_until="2026-12-04T21:00:00Z")
    response = sync(load_request("sync-reference-strings.json"), engine=engine, config=config, now=NOW)
    assert response["resyncAfterSeconds"] == 60.0  # discoveryInterval "60" is below 3600 s to validUntil


def test_customize_asks_for_flavours_and_target_service():
    response = customize(load_request("customize-three-flavours.json"))
    rules = response["relatedResources"]
    assert rules[0] == {
        "apiVersion": "apps/v1",
        "resource": "deployments",
        "labelSelector": {"matchLabels": {"carbonrouter/parent-service": "checkout"}},
    }
    assert rules[1]["labelSelector"] == {
        "matchLabels": {"app": "checkout"},
        "matchExpressions": [{"key": "carbonstat.precision", "operator": "Exists"}],
    }
    assert rules[2] == {
        "apiVersion": "v1",
        "resource": "services",
        "namespace": "shop",
        "names": ["checkout"],
    }


def test_customize_without_target_asks_for_nothing():
    request = load_request("customize-three-flavours.json")
    del request["parent"]["spec"]["target"]
    assert customize(request) == {"relatedResources": []}


def test_real_engine_decision_renders_children(config):
    engine = InProcessEngine.create()
    response = sync(load_request("sync-first-three-flavours.json"), engine=engine, config=config, now=NOW)
    assert condition(response, "EngineReachable")["status"] == "True"
    assert len(response["children"]) == 12
    weights = [f["weight"] for f in response["status"]["flavours"]]
    assert sum(weights) == 100
    for scaled in children_by_kind(response, "ScaledObject"):
        assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert response["status"]["ledger"].keys() >= {"balance", "velocity"}


def test_real_engine_ceilings_reach_scaledobjects(config):
    response = sync(
        load_request("sync-steady-state.json"), engine=InProcessEngine.create(), config=config, now=NOW
    )
    ceilings = response["status"]["lastDecision"]["processing"]["ceilings"]
    bounds = {"router": (1, 4), "consumer": (1, 6), "target": (1, 8)}
    expected = {
        component: min(max(ceilings[component], low), high) for component, (low, high) in bounds.items()
    }
    scaled = {
        s["metadata"]["name"]: s["spec"]["maxReplicaCount"]
        for s in children_by_kind(response, "ScaledObject")
    }
    assert scaled["checkout-router"] == expected["router"]
    assert scaled["checkout-consumer"] == expected["consumer"]
    for flavour in ("high", "mid", "low"):
        assert scaled[f"checkout-flavour-checkout-{flavour}"] == expected["target"]
    assert response["status"]["effectiveReplicaCeilings"]["consumer"] == expected["consumer"]


def test_real_engine_weights_reach_status(config):
    response = sync(
        load_request("sync-steady-state.json"), engine=InProcessEngine.create(), config=config, now=NOW
    )
    weights = response["status"]["lastDecision"]["flavourWeights"]
    assert {f["name"]: f["weight"] for f in response["status"]["flavours"]} == weights
    assert response["status"]["activePolicy"] == "credit-greedy"
    assert condition(response, "Ready")["status"] == "True"
