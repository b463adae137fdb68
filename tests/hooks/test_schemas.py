"""Rendered children against published schemas, and the CRD and controller manifests themselves."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator

from hooks.engine_client import InProcessEngine
from hooks.spec import load_crd_schema, load_spec_schema, schema_problems
from hooks.sync import sync
from tests.hooks.conftest import NOW, load_request, validate_child
from tests.hooks.fakes import FakeEngine

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "metacontroller" / "crd-trafficschedule.yaml"
CONTROLLER_PATH = ROOT / "metacontroller" / "compositecontroller.yaml"
RENDERED_KINDS = {
    ("apps/v1", "deployments"): "Deployment",
    ("v1", "services"): "Service",
    ("keda.sh/v1alpha1", "scaledobjects"): "ScaledObject",
    ("keda.sh/v1alpha1", "triggerauthentications"): "TriggerAuthentication",
    ("networking.istio.io/v1", "destinationrules"): "DestinationRule",
    ("networking.istio.io/v1", "virtualservices"): "VirtualService",
}
STRUCTURAL_FORBIDDEN_IN_ANYOF = ("type", "description", "default", "additionalProperties", "nullable")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "fixture", ["sync-first-three-flavours.json", "sync-reference-strings.json", "sync-steady-state.json"]
)
def test_rendered_children_match_published_schemas(config, fixture):
    response = sync(load_request(fixture), engine=FakeEngine(), config=config, now=NOW)
    assert len(response["children"]) == 12
    for child in response["children"]:
        validate_child(child)


def test_children_from_real_engine_match_published_schemas(config):
    response = sync(
        load_request("sync-first-three-flavours.json"),
        engine=InProcessEngine.create(),
        config=config,
        now=NOW,
    )
    assert len(response["children"]) == 12
    for child in response["children"]:
        validate_child(child)


def test_schema_check_rejects_unknown_fields(config):
    children = sync(
        load_request("sync-first-three-flavours.json"), engine=FakeEngine(), config=config, now=NOW
    )["children"]
    scaled = next(c for c in children if c["kind"] == "ScaledObject")
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        validate_child(scaled)
    deployment = next(c for c in children if c["kind"] == "Deployment")
    deployment["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_child(deployment)


STATUS_CASES = {
    "first sync": ("sync-first-three-flavours.json", lambda: FakeEngine()),
    "steady state": ("sync-steady-state.json", lambda: FakeEngine()),
    "invalid spec": ("sync-invalid-spec.json", lambda: FakeEngine()),
    "real engine": ("sync-steady-state.json", lambda: InProcessEngine.create()),
}


@pytest.mark.parametrize("case", sorted(STATUS_CASES))
def test_status_survives_crd_schema_unpruned(config, case):
    fixture, engine = STATUS_CASES[case]
    status = sync(load_request(fixture), engine=engine(), config=config, now=NOW)["status"]
    # Undeclared fields count as errors here, because the API server would prune them.
    validator = Draft202012Validator(load_crd_schema(CRD_PATH, "status"))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(status)]
    assert errors == []


def test_crd_is_a_valid_customresourcedefinition():
    assert kubernetes_validate.validate(load_yaml(CRD_PATH), "1.30", strict=True) == "1.30"


def test_crd_declares_status_subresource_on_every_served_version():
    versions = load_yaml(CRD_PATH)["spec"]["versions"]
    served = [v for v in versions if v["served"]]
    assert served
    for version in served:
        assert version.get("subresources", {}).get("status") == {}, version["name"]


def test_crd_printer_columns():
    [version] = load_yaml(CRD_PATH)["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Policy"] == ".status.activePolicy"
    assert columns["Throttle"] == ".status.processingThrottle"
    assert columns["Valid Until"] == ".status.validUntil"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'


def walk(node: dict, path: str = ""):
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}[*]")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")


def test_crd_schema_is_structural():
    [version] = load_yaml(CRD_PATH)["spec"]["versions"]
    root = version["schema"]["openAPIV3Schema"]
    for path, node in walk(root):
        int_or_string = node.get("x-kubernetes-int-or-string")
        assert "type" in node or int_or_string or node.get("x-kubernetes-preserve-unknown-fields"), path
        if "properties" in node:
            assert "additionalProperties" not in node, path
        assert "$ref" not in node, path
        for branch in node.get("anyOf", []):
            if int_or_string:
                assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            else:
                assert not set(branch) & set(STRUCTURAL_FORBIDDEN_IN_ANYOF), path


def test_example_schedule_passes_crd_schema():
    example = load_yaml(ROOT / "examples" / "trafficschedule.yaml")
    assert schema_problems(example["spec"], crd_path=CRD_PATH) == []


def test_hook_schema_forbids_undeclared_fields():
    schema = load_spec_schema(CRD_PATH)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["scheduler"]["additionalProperties"] is False
    # Free-form maps stay open.
    assert schema["properties"]["target"]["properties"]["selector"]["additionalProperties"] == {
        "type": "string"
    }


def test_example_flavours_are_valid_kubernetes_objects():
    docs = list(yaml.safe_load_all((ROOT / "examples" / "carbonstat-flavours.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Service", "Deployment", "Deployment", "Deployment"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
        if doc["kind"] == "Deployment":
            assert "replicas" not in doc["spec"]


def test_controller_updates_every_child_in_place():
    controller = load_yaml(CONTROLLER_PATH)
    rules = controller["spec"]["childResources"]
    assert {(r["apiVersion"], r["resource"]) for r in rules} == set(RENDERED_KINDS)
    for rule in rules:
        assert rule["updateStrategy"]["method"] == "InPlace", rule["resource"]
    assert controller["spec"]["generateSelector"] is True


def test_controller_hooks_point_at_hooks_service():
    hooks = load_yaml(CONTROLLER_PATH)["spec"]["hooks"]
    for name, path in (("sync", "/sync"), ("customize", "/customize")):
        webhook = hooks[name]["webhook"]
        assert webhook["service"] == {
            "name": "carbonrouter-hooks",
            "namespace": "carbonrouter-system",
            "port": 80,
            "protocol": "http",
        }
        assert webhook["path"] == path
        assert webhook["timeout"] == "10s"


def test_controller_child_types_cover_rendered_kinds(config):
    response = sync(
        load_request("sync-first-three-flavours.json"), engine=FakeEngine(), config=config, now=NOW
    )
    declared = {(api, RENDERED_KINDS[(api, resource)]) for api, resource in RENDERED_KINDS}
    rendered = {(c["apiVersion"], c["kind"]) for c in response["children"]}
    assert rendered == declared
