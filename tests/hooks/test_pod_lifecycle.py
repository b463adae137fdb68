"""Pod settings that keep router shutdowns and consumer outages visible to Kubernetes."""

from __future__ import annotations

from hooks.sync import sync
from tests.hooks.conftest import NOW, load_request
from tests.hooks.fakes import FakeEngine


def rendered_deployment(config, component: str) -> dict:
    request = load_request("sync-first-three-flavours.json")
    response = sync(request, engine=FakeEngine(), config=config, now=NOW)
    for child in response["children"]:
        if child["kind"] == "Deployment" and child["metadata"]["name"].endswith(f"-{component}"):
            return child
    raise AssertionError(f"no {component} Deployment rendered")


def env_value(container: dict, name: str) -> str:
    return next(item["value"] for item in container["env"] if item["name"] == name)


def test_router_grace_outlasts_graceful_timeout(config):
    pod = rendered_deployment(config, "router")["spec"]["template"]["spec"]
    request_timeout = float(env_value(pod["containers"][0], "REQUEST_TIMEOUT"))
    # The router's gunicorn drains requests for request timeout + 2 s after SIGTERM.
    assert pod["terminationGracePeriodSeconds"] >= request_timeout + 2


def test_consumer_ready_only_with_broker(config):
    container = rendered_deployment(config, "consumer")["spec"]["template"]["spec"]["containers"][0]
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert probe["port"] == "metrics"
