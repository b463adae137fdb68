"""The Argo CD app of apps hangs together: paths exist, the project admits every app,
Argo CD leaves KEDA's replica counts and the schedules' status alone, and the
argocd-cm patch carries exactly the tested health script."""

from __future__ import annotations

import pytest
import yaml

from tests.gitops.published_schemas import REPO, load_objects, yaml_files
from tests.gitops.render_argocd_cm import CONFIGMAP_PATCH, HEALTH_KEY, HEALTH_SCRIPT, render_configmap

ARGOCD = REPO / "argocd"


@pytest.fixture(scope="module")
def applications() -> list[dict]:
    objects = load_objects(yaml_files(ARGOCD))
    return [item.body for item in objects if item.body["kind"] == "Application"]


@pytest.fixture(scope="module")
def project() -> dict:
    return yaml.safe_load((ARGOCD / "apps" / "project.yaml").read_text())


def application_named(applications: list[dict], name: str) -> dict:
    matches = [app for app in applications if app["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one Application {name}, found {len(matches)}"
    return matches[0]


def test_configmap_patch_carries_health_script_verbatim():
    patch = yaml.safe_load(CONFIGMAP_PATCH.read_text())

    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"][HEALTH_KEY] == HEALTH_SCRIPT.read_text()


def test_configmap_patch_is_regenerated_from_script():
    expected = render_configmap(HEALTH_SCRIPT.read_text())

    assert CONFIGMAP_PATCH.read_text() == expected, (
        "argocd/config/argocd-cm-health.yaml is out of date; run "
        ".venv/bin/python -m tests.gitops.render_argocd_cm"
    )


def test_every_application_source_path_exists(applications):
    for app in applications:
        path = REPO / app["spec"]["source"]["path"]
        assert path.is_dir(), f"{app['metadata']['name']}: source path {path} is missing"
        assert list(path.glob("*.yaml")), f"{app['metadata']['name']}: no YAML in {path}"


def test_root_application_creates_every_child(applications):
    root = application_named(applications, "carbonrouter-root")
    children = load_objects(yaml_files(REPO / root["spec"]["source"]["path"]))

    names = {item.body["metadata"]["name"] for item in children if item.body["kind"] == "Application"}
    assert names == {"carbonrouter-platform", "carbonrouter-carbonstat", "carbonrouter-schedules"}


def test_project_admits_every_application(applications, project):
    destinations = {(d["server"], d["namespace"]) for d in project["spec"]["destinations"]}
    for app in applications:
        spec = app["spec"]
        assert spec["project"] == project["metadata"]["name"]
        assert spec["source"]["repoURL"] in project["spec"]["sourceRepos"]
        assert (spec["destination"]["server"], spec["destination"]["namespace"]) in destinations


def test_project_admits_every_kind_the_apps_deploy(applications, project):
    cluster_kinds = {(k["group"], k["kind"]) for k in project["spec"]["clusterResourceWhitelist"]}
    namespaced_kinds = {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]}
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "CompositeController",
    }
    for app in applications:
        for item in load_objects(yaml_files(REPO / app["spec"]["source"]["path"])):
            api_version = item.body["apiVersion"]
            group = api_version.split("/")[0] if "/" in api_version else ""
            kind = item.body["kind"]
            allowed = cluster_kinds if kind in cluster_scoped else namespaced_kinds
            assert (group, kind) in allowed, (
                f"{item.label}: {group}/{kind} is not whitelisted in the AppProject"
            )


def test_workload_ignores_replicas_that_keda_sets(applications):
    workload = application_named(applications, "carbonrouter-carbonstat")

    rules = workload["spec"]["ignoreDifferences"]
    assert {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]} in rules
    assert "RespectIgnoreDifferences=true" in workload["spec"]["syncPolicy"]["syncOptions"]


def test_schedules_ignore_status_the_sync_hook_writes(applications):
    schedules = application_named(applications, "carbonrouter-schedules")

    rule = next(r for r in schedules["spec"]["ignoreDifferences"] if r["kind"] == "TrafficSchedule")
    assert rule["group"] == "scheduling.carbonrouter.io"
    assert "/status" in rule["jsonPointers"]
    assert "SkipDryRunOnMissingResource=true" in schedules["spec"]["syncPolicy"]["syncOptions"]


def test_platform_syncs_before_workload_and_schedules(applications):
    wave = {
        app["metadata"]["name"]: int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for app in applications
        if app["metadata"]["name"] != "carbonrouter-root"
    }

    assert wave["carbonrouter-platform"] < wave["carbonrouter-carbonstat"] < wave["carbonrouter-schedules"]


def test_placeholder_secrets_are_never_overwritten(applications):
    secrets = [
        item
        for item in load_objects(yaml_files(ARGOCD, REPO / "metacontroller"))
        if item.body["kind"] == "Secret"
    ]
    assert secrets, "no RabbitMQ Secret placeholder shipped"
    for secret in secrets:
        owner = next(
            app for app in applications if secret.path.is_relative_to(REPO / app["spec"]["source"]["path"])
        )
        ignored = [
            r
            for r in owner["spec"].get("ignoreDifferences", [])
            if r["kind"] == "Secret" and r.get("name") == secret.body["metadata"]["name"]
        ]
        assert ignored and "/data" in ignored[0]["jsonPointers"], secret.label
        assert "CHANGE-ME" in yaml.safe_dump(secret.body), f"{secret.label}: placeholder is not marked"
