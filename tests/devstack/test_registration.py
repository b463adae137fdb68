"""Registration: the sync request devstack sends looks like Metacontroller's, and state round-trips."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from devstack.metacontroller import (
    SelectorError,
    child_types,
    group_objects,
    load_controller,
    select_related,
    selector_matches,
    sync_request,
)
from devstack.registration import Registrar, RegistrationError, engine_config, load_example
from devstack.settings import StackSettings, free_ports


def settings_for(**overrides) -> StackSettings:
    return StackSettings(**overrides)


def test_example_moves_to_configured_schedule():
    example = load_example(settings_for(namespace="e2e-abc", name="stat", policy="p100"))
    assert example.schedule["metadata"] == {"name": "stat", "namespace": "e2e-abc"}
    assert example.schedule["spec"]["target"]["service"] == "stat"
    assert example.schedule["spec"]["scheduler"]["policy"] == "p100"
    for obj in example.related:
        assert obj["metadata"]["namespace"] == "e2e-abc"
    assert {d["metadata"]["labels"]["carbonrouter/parent-service"] for d in example.deployments} == {"stat"}


def test_sync_request_has_metacontroller_shape():
    controller = load_controller()
    example = load_example(settings_for())
    request = sync_request(
        controller=controller, schedule=example.schedule, status=None, children=[], related=example.related
    )
    assert set(request) == {"controller", "parent", "children", "related", "finalizing"}
    assert request["finalizing"] is False
    assert request["controller"]["kind"] == "CompositeController"
    assert request["parent"]["kind"] == "TrafficSchedule"
    assert request["parent"]["metadata"]["uid"]
    assert "status" not in request["parent"]
    # Every declared child type is present, empty before the first sync.
    assert set(request["children"]) == set(child_types(controller))
    assert all(value == {} for value in request["children"].values())
    assert set(request["related"]["Deployment.apps/v1"]) == {
        "carbonstat-high",
        "carbonstat-mid",
        "carbonstat-low",
    }
    assert set(request["related"]["Service.v1"]) == {"carbonstat"}


def test_sync_request_uid_is_stable():
    example = load_example(settings_for())
    first = sync_request(controller={}, schedule=example.schedule, status=None, children=[], related=[])
    second = sync_request(controller={}, schedule=example.schedule, status=None, children=[], related=[])
    assert first["parent"]["metadata"]["uid"] == second["parent"]["metadata"]["uid"]


def test_sync_request_carries_previous_status_and_children():
    example = load_example(settings_for())
    child = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "carbonstat-router"}}
    status = {"creditBalance": 0.2, "activePolicy": "credit-greedy"}
    request = sync_request(
        controller=load_controller(), schedule=example.schedule, status=status, children=[child], related=[]
    )
    assert request["parent"]["status"] == status
    assert request["children"]["Deployment.apps/v1"] == {"carbonstat-router": child}


def test_child_types_from_controller():
    controller = {
        "spec": {
            "childResources": [
                {"apiVersion": "apps/v1", "resource": "deployments"},
                {"apiVersion": "keda.sh/v1alpha1", "resource": "scaledobjects"},
                {"apiVersion": "networking.istio.io/v1", "resource": "virtualservices"},
            ]
        }
    }
    assert child_types(controller) == [
        "Deployment.apps/v1",
        "ScaledObject.keda.sh/v1alpha1",
        "VirtualService.networking.istio.io/v1",
    ]


def test_group_objects_by_kind_and_name():
    objects = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}},
    ]
    assert set(group_objects(objects)["Service.v1"]) == {"a", "b"}


def test_engine_config_from_example():
    body = engine_config(load_example(settings_for()), state={"ledger": {"balance": 0.1}})
    assert [f["name"] for f in body["flavours"]] == ["high", "mid", "low"]
    assert [f["precision"] for f in body["flavours"]] == [100, 50, 25]
    assert [f["energy"] for f in body["flavours"]] == [1.0, 0.6, 0.3]
    assert body["componentBounds"]["target"] == {"min": 1, "max": 10}
    assert body["scheduler"]["policy"] == "credit-greedy"
    assert body["state"] == {"ledger": {"balance": 0.1}}


CUSTOMIZE_RULES = [
    {
        "apiVersion": "apps/v1",
        "resource": "deployments",
        "labelSelector": {"matchLabels": {"carbonrouter/parent-service": "carbonstat"}},
    },
    {"apiVersion": "v1", "resource": "services", "names": ["carbonstat"]},
]


class FakeHooks:
    """A local HTTP server standing in for the hooks, recording each sync body."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.bodies = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path == "/customize":
                    status, reply = 200, {"relatedResources": CUSTOMIZE_RULES}
                else:
                    owner.bodies.append(body)
                    status, reply = owner.replies.pop(0)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks_server():
    servers = []

    def start(replies):
        server = FakeHooks(replies)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_registrar_round_trips_status(hooks_server, tmp_path):
    child = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "carbonstat-router"}}
    first = {"status": {"creditBalance": 0.3}, "children": [child], "resyncAfterSeconds": 4.5}
    second = {"status": {"creditBalance": 0.25}, "children": [child], "resyncAfterSeconds": 400}
    hooks = hooks_server([(200, first), (200, second)])
    ports = {**free_ports(["engine"]), "hooks": hooks.port}
    registrar = Registrar(settings_for(ports=ports, run_dir=tmp_path))

    assert registrar.sync_once() == 4.5
    # The resync delay is capped so the local schedule never goes unsynced for long.
    assert registrar.sync_once() == registrar.settings.resync_seconds
    assert "status" not in hooks.bodies[0]["parent"]
    assert hooks.bodies[1]["parent"]["status"] == {"creditBalance": 0.3}
    assert hooks.bodies[1]["children"]["Service.v1"] == {"carbonstat-router": child}
    assert registrar.status == {"creditBalance": 0.25}
    # The last sync's result is readable under the run folder.
    assert yaml.safe_load((tmp_path / "status.yaml").read_text()) == {"creditBalance": 0.25}
    assert list(yaml.safe_load_all((tmp_path / "children.yaml").read_text())) == [child]


def test_registrar_reports_hook_error(hooks_server, tmp_path):
    hooks = hooks_server([(500, {"error": "engine timed out"})])
    registrar = Registrar(settings_for(ports={"engine": 1, "hooks": hooks.port}, run_dir=tmp_path))
    with pytest.raises(RegistrationError, match="returned 500.*engine timed out"):
        registrar.sync_once()


def test_registrar_rejects_reply_without_children(hooks_server, tmp_path):
    hooks = hooks_server([(200, {"status": {}})])
    registrar = Registrar(settings_for(ports={"engine": 1, "hooks": hooks.port}, run_dir=tmp_path))
    with pytest.raises(RegistrationError, match="no children list"):
        registrar.sync_once()


def test_failing_condition_names_first_false(hooks_server, tmp_path):
    conditions = [
        {"type": "CeilingsClamped", "status": "False", "message": "every ceiling is within its bounds"},
        {"type": "SpecValid", "status": "True"},
        {"type": "EngineReachable", "status": "False", "message": "engine timed out after 3 s"},
        {"type": "Ready", "status": "False", "message": "engine unreachable"},
    ]
    hooks = hooks_server([(200, {"status": {"conditions": conditions}, "children": []})])
    registrar = Registrar(settings_for(ports={"engine": 1, "hooks": hooks.port}, run_dir=tmp_path))
    assert registrar.failing_condition() is None
    registrar.sync_once()
    assert registrar.failing_condition() == "EngineReachable: engine timed out after 3 s"


def test_registrar_sends_what_customize_selects(hooks_server, tmp_path):
    hooks = hooks_server([(200, {"status": {}, "children": []})])
    registrar = Registrar(settings_for(ports={"engine": 1, "hooks": hooks.port}, run_dir=tmp_path))
    registrar.sync_once()
    related = hooks.bodies[0]["related"]
    assert set(related["Deployment.apps/v1"]) == {"carbonstat-high", "carbonstat-mid", "carbonstat-low"}
    assert set(related["Service.v1"]) == {"carbonstat"}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"app": "a"}}, {"app": "a", "x": "1"}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "b"}, False),
        ({"matchExpressions": [{"key": "p", "operator": "Exists"}]}, {"p": "50"}, True),
        ({"matchExpressions": [{"key": "p", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "p", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "p", "operator": "In", "values": ["50", "25"]}]}, {"p": "25"}, True),
        ({"matchExpressions": [{"key": "p", "operator": "NotIn", "values": ["50"]}]}, {"p": "50"}, False),
        ({}, {"anything": "x"}, True),
    ],
)
def test_selector_matches_cases(selector, labels, expected):
    assert selector_matches(selector, labels) is expected


def test_selector_unknown_operator_rejected():
    with pytest.raises(SelectorError, match="unknown label selector operator 'Gt' on key 'p'"):
        selector_matches({"matchExpressions": [{"key": "p", "operator": "Gt"}]}, {"p": "1"})


def test_select_related_skips_other_namespaces_and_kinds():
    objects = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "1"}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "b", "namespace": "other", "labels": {"x": "1"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "1"}},
        },
    ]
    rules = [
        {"apiVersion": "apps/v1", "resource": "deployments", "labelSelector": {"matchLabels": {"x": "1"}}}
    ]
    selected = select_related(rules, objects, namespace="ns")
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in selected] == [("Deployment", "a")]
