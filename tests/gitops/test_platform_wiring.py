"""The platform manifests, the example workload and the sync hook fit together.

The shipped TrafficSchedule is rendered by the real sync hook (`python -m
hooks.render --in-process`, with the hooks' environment taken from
metacontroller/hooks.yaml and the carbon source switched to the bundled trace
so nothing leaves the machine). Its children must be valid for their
published schemas and must pass the NetworkPolicies, images and Secret the
platform and the workload ship.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import yaml

from tests.gitops.published_schemas import REPO, ManifestObject, load_objects, object_errors, yaml_files

PLATFORM = REPO / "metacontroller"
WORKLOAD = REPO / "argocd" / "workloads" / "carbonstat"
SCHEDULE = REPO / "argocd" / "schedules" / "carbonstat.yaml"


def platform_objects() -> list[dict]:
    return [item.body for item in load_objects(yaml_files(PLATFORM))]


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container_env(deployment: dict) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def selector_matches(selector: dict, labels: dict) -> bool:
    """Evaluate a Kubernetes LabelSelector (matchLabels and In/NotIn/Exists/DoesNotExist) on labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@pytest.fixture(scope="module")
def rendered_children(tmp_path_factory) -> list[dict]:
    schedule = yaml.safe_load(SCHEDULE.read_text())
    schedule["spec"]["scheduler"]["carbonTarget"] = "trace"
    schedule_file = tmp_path_factory.mktemp("render") / "schedule.yaml"
    schedule_file.write_text(yaml.safe_dump(schedule))
    workload_files = [
        str(p)
        for p in sorted(WORKLOAD.glob("*.yaml"))
        if yaml.safe_load(p.read_text()).get("kind") in {"Deployment", "Service"}
    ]
    hooks_env = container_env(find(platform_objects(), "Deployment", "carbonrouter-hooks"))

    completed = subprocess.run(
        [sys.executable, "-m", "hooks.render", str(schedule_file), *workload_files, "--in-process"],
        cwd=REPO,
        env={**os.environ, **hooks_env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    return [child for child in yaml.safe_load_all(completed.stdout) if child]


def test_rendered_children_are_valid(rendered_children):
    items = [ManifestObject(path=SCHEDULE, index=i, body=child) for i, child in enumerate(rendered_children)]

    results = object_errors(items)

    assert {label: errors for label, errors in results.items() if errors} == {}


def test_rendered_children_cover_every_flavour(rendered_children):
    scaled = [c["spec"]["scaleTargetRef"]["name"] for c in rendered_children if c["kind"] == "ScaledObject"]
    subsets = next(c for c in rendered_children if c["kind"] == "DestinationRule")["spec"]["subsets"]

    assert {"carbonstat-high", "carbonstat-mid", "carbonstat-low"} <= set(scaled)
    assert len(subsets) == 3


def test_routers_and_consumers_may_reach_engine(rendered_children):
    policy = find(platform_objects(), "NetworkPolicy", "carbonrouter-engine-ingress")
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    pods = [c for c in rendered_children if c["kind"] == "Deployment"]

    assert {p["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods} == {
        "router",
        "consumer",
    }
    for pod in pods:
        labels = pod["spec"]["template"]["metadata"]["labels"]
        admitted = [
            peer
            for peer in peers
            if "namespaceSelector" in peer
            and peer["namespaceSelector"] == {}
            and selector_matches(peer["podSelector"], labels)
        ]
        assert admitted, f"{pod['metadata']['name']}: the engine NetworkPolicy rejects labels {labels}"


def test_flavour_pods_cannot_reach_engine():
    policy = find(platform_objects(), "NetworkPolicy", "carbonrouter-engine-ingress")
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"] if "podSelector" in peer]
    flavour = yaml.safe_load((WORKLOAD / "deployment-high.yaml").read_text())
    labels = flavour["spec"]["template"]["metadata"]["labels"]

    assert not any(selector_matches(peer["podSelector"], labels) for peer in peers)


def test_rendered_workloads_use_platform_images_and_engine(rendered_children):
    hooks_env = container_env(find(platform_objects(), "Deployment", "carbonrouter-hooks"))
    images = {
        c["metadata"]["name"]: c["spec"]["template"]["spec"]["containers"][0]["image"]
        for c in rendered_children
        if c["kind"] == "Deployment"
    }
    engine_urls = {container_env(c).get("ENGINE_URL") for c in rendered_children if c["kind"] == "Deployment"}

    assert sorted(images.values()) == sorted(
        [hooks_env["HOOKS_CONSUMER_IMAGE"], hooks_env["HOOKS_ROUTER_IMAGE"]]
    )
    assert engine_urls == {hooks_env["HOOKS_ENGINE_URL"]}


def test_rendered_trigger_authentication_reads_workload_secret(rendered_children):
    secret = yaml.safe_load((WORKLOAD / "rabbitmq-secret.yaml").read_text())
    authentication = next(c for c in rendered_children if c["kind"] == "TriggerAuthentication")

    reference = authentication["spec"]["secretTargetRef"][0]
    assert reference["parameter"] == "host"
    assert reference["name"] == secret["metadata"]["name"]
    assert reference["key"] in secret["stringData"]


def test_hooks_engine_url_names_engine_service():
    objects = platform_objects()
    url = urlparse(container_env(find(objects, "Deployment", "carbonrouter-hooks"))["HOOKS_ENGINE_URL"])
    service_name, namespace = url.hostname.split(".")[:2]

    service = find(objects, "Service", service_name)
    assert service["metadata"]["namespace"] == namespace
    assert (url.port or 80) in [port["port"] for port in service["spec"]["ports"]]


def test_compositecontroller_hooks_reach_hooks_service():
    objects = platform_objects()
    controller = find(objects, "CompositeController", "carbonrouter-trafficschedule")

    for hook in controller["spec"]["hooks"].values():
        target = hook["webhook"]["service"]
        service = find(objects, "Service", target["name"])
        assert service["metadata"]["namespace"] == target["namespace"]
        assert target.get("port", 80) in [port["port"] for port in service["spec"]["ports"]]


@pytest.mark.parametrize("folder", [PLATFORM, WORKLOAD], ids=["platform", "workload"])
def test_every_service_selects_one_deployment_port(folder):
    objects = [item.body for item in load_objects(yaml_files(folder))]
    deployments = [o for o in objects if o["kind"] == "Deployment"]

    for service in (o for o in objects if o["kind"] == "Service"):
        selected = [
            d
            for d in deployments
            if selector_matches(
                {"matchLabels": service["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert selected, f"Service {service['metadata']['name']} selects no Deployment"
        for deployment in selected:
            port_names = {
                p["name"]
                for c in deployment["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in port_names, (
                    f"{service['metadata']['name']} -> {port['targetPort']}"
                )


@pytest.mark.parametrize("folder", [PLATFORM, WORKLOAD], ids=["platform", "workload"])
def test_every_container_is_hardened_and_bounded(folder):
    deployments = [
        item.body for item in load_objects(yaml_files(folder)) if item.body["kind"] == "Deployment"
    ]

    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert "readinessProbe" in container and "livenessProbe" in container, where


def test_network_policies_select_platform_pods():
    objects = platform_objects()
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        selected = [
            d
            for d in objects
            if d["kind"] == "Deployment"
            and selector_matches(policy["spec"]["podSelector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, policy["metadata"]["name"]
