"""The Flask shell: status codes, byte-identical bodies and metrics."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from hooks.app import create_app
from hooks.config import HookConfig
from hooks.sync import sync
from tests.hooks.conftest import NOW, load_request
from tests.hooks.fakes import FakeEngine, unreachable_engine


def client_for(config, engine=None):
    return create_app(config, engine=engine or FakeEngine(), clock=lambda: NOW).test_client()


def test_sync_route_returns_sorted_json_of_sync(config):
    request = load_request("sync-steady-state.json")
    response = client_for(config).post("/sync", json=request)
    assert response.status_code == 200
    expected = sync(request, engine=FakeEngine(), config=config, now=NOW)
    assert response.get_data(as_text=True) == json.dumps(expected, sort_keys=True, separators=(",", ":"))


def test_sync_route_is_byte_identical_across_calls(config):
    client = client_for(config)
    body = json.dumps(load_request("sync-steady-state.json"))
    first = client.post("/sync", data=body, content_type="application/json").get_data()
    second = client.post("/sync", data=body, content_type="application/json").get_data()
    assert first == second


@pytest.mark.parametrize("route", ["/sync", "/customize"])
def test_malformed_json_is_400_with_message(config, route):
    response = client_for(config).post(route, data=b'{"parent": {', content_type="application/json")
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"].startswith("request body is not valid JSON")
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"children": {}}, "no 'parent' object"),
        ({"parent": {"metadata": {"name": "checkout"}}}, "parent.metadata.namespace is missing"),
        ({"parent": {"metadata": {"name": "c", "namespace": "shop"}}, "children": []}, "'children' must map"),
    ],
    ids=["list", "no parent", "no namespace", "children list"],
)
def test_request_not_shaped_like_metacontroller_is_400(config, body, message):
    response = client_for(config).post("/sync", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_stale_request_is_429_with_retry_after(config):
    request = load_request("sync-steady-state.json")
    del request["parent"]["status"]
    response = client_for(config, unreachable_engine()).post("/sync", json=request)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "15"
    assert "no parent.status" in response.get_json()["error"]


def test_engine_bug_is_500_without_traceback(config):
    response = client_for(config, FakeEngine(error=KeyError("flavourWeights"))).post(
        "/sync", json=load_request("sync-steady-state.json")
    )
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "internal error" in text
    assert "Traceback" not in text
    assert "KeyError" not in text


def test_customize_route(config):
    response = client_for(config).post("/customize", json=load_request("customize-three-flavours.json"))
    assert response.status_code == 200
    assert len(response.get_json()["relatedResources"]) == 3


def test_metrics_count_syncs_outcomes_and_engine_failures(config):
    client = client_for(config, unreachable_engine())
    client.post("/sync", json=load_request("sync-steady-state.json"))
    client.post("/sync", data=b"nope", content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    assert "hooks_sync_duration_seconds_count 2.0" in text
    assert 'hooks_sync_outcomes_total{outcome="not-ready-EngineUnavailable"} 1.0' in text
    assert 'hooks_sync_outcomes_total{outcome="bad-request"} 1.0' in text
    assert 'hooks_engine_call_failures_total{reason="EngineUnavailable"} 1.0' in text


def test_healthz(config):
    response = client_for(config).get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_render_failure_is_503(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(HookConfig().templates_dir, templates)
    broken = templates / "router-service.yaml.j2"
    broken.write_text(broken.read_text() + "  extra: {{ router.no_such_field }}\n")
    config = dataclasses.replace(HookConfig(), templates_dir=templates)
    response = client_for(config).post("/sync", json=load_request("sync-steady-state.json"))
    assert response.status_code == 503
    assert "rendering children failed" in response.get_json()["error"]
    assert response.headers["Retry-After"] == "15"


def nested_array(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("route", ["/sync", "/customize"])
@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_deeply_nested_body_is_400_json(config, route, levels):
    response = client_for(config).post(route, data=nested_array(levels), content_type="application/json")
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert "nested" in response.get_json()["error"]


def test_nesting_over_depth_limit_is_400(config):
    # 500 levels parse without a RecursionError, but any later recursive walk
    # (schema validation, serialisation) could still overflow the stack.
    request = load_request("sync-steady-state.json")
    deep: list = []
    for _ in range(500):
        deep = [deep]
    request["parent"]["spec"]["target"]["selector"] = {"app": deep}
    response = client_for(config).post("/sync", json=request)
    assert response.status_code == 400
    assert "nested" in response.get_json()["error"]


def test_kubernetes_nesting_depth_accepted(config):
    request = load_request("sync-steady-state.json")
    deep: dict = {}
    for _ in range(40):
        deep = {"a": deep}
    request["parent"]["status"]["diagnostics"] = deep
    response = client_for(config).post("/sync", json=request)
    assert response.status_code == 200


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nowhere", 404),
    ("GET", "/sync", 405),
    ("DELETE", "/customize", 405),
    ("POST", "/healthz", 405),
])
def test_routing_errors_are_json(config, method, path, status):
    response = client_for(config).open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]


def test_customize_bug_is_500_json(config, monkeypatch):
    def broken_customize(request):
        raise KeyError("relatedResources")

    monkeypatch.setattr("hooks.app.customize", broken_customize)
    response = client_for(config).post("/customize", json=load_request("customize-three-flavours.json"))
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert "internal error" in response.get_json()["error"]
    assert "KeyError" not in response.get_data(as_text=True)


def test_customize_spec_list_relates_nothing(config):
    request = load_request("customize-three-flavours.json")
    request["parent"]["spec"] = ["not", "an", "object"]
    response = client_for(config).post("/customize", json=request)
    assert response.status_code == 200
    assert response.get_json() == {"relatedResources": []}


def test_method_not_allowed_lists_allowed_methods(config):
    response = client_for(config).get("/sync")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.mimetype == "application/json"
