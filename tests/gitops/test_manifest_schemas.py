"""Every object in metacontroller/ and argocd/ is valid for the published schema of its kind.

`published_schemas.object_errors` picks the schema per kind; these tests run it
over the whole tree, and prove on broken copies that each checker rejects what
it should, so a checker that silently accepted everything would fail here.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.gitops.published_schemas import (
    OUR_CRD,
    REPO,
    ManifestObject,
    builtin_errors,
    keda_errors,
    load_crd_schemas,
    load_objects,
    object_errors,
    openapi_errors,
    structural_violations,
    yaml_files,
)

MANIFEST_FOLDERS = (REPO / "metacontroller", REPO / "argocd")


@pytest.fixture(scope="module")
def manifest_objects() -> list[ManifestObject]:
    return load_objects(yaml_files(*MANIFEST_FOLDERS))


@pytest.fixture(scope="module")
def crd_schemas() -> dict:
    return load_crd_schemas()


def objects_of_kind(objects: list[ManifestObject], kind: str) -> list[ManifestObject]:
    return [item for item in objects if item.body.get("kind") == kind]


def test_every_manifest_object_is_valid(manifest_objects):
    results = object_errors(manifest_objects)

    invalid = {label: errors for label, errors in results.items() if errors}
    assert len(results) == len(manifest_objects)
    assert invalid == {}


@pytest.mark.parametrize(
    "kind",
    [
        "Namespace",
        "Deployment",
        "Service",
        "ServiceAccount",
        "NetworkPolicy",
        "ConfigMap",
        "Secret",
        "CustomResourceDefinition",
        "CompositeController",
        "TrafficSchedule",
        "Application",
        "AppProject",
        "ClusterRole",
        "PodDisruptionBudget",
    ],
)
def test_manifests_include_kind(manifest_objects, kind):
    assert objects_of_kind(manifest_objects, kind), f"no {kind} in metacontroller/ or argocd/"


def test_every_object_has_recommended_labels(manifest_objects):
    missing = {
        item.label: sorted(
            {"app.kubernetes.io/name", "app.kubernetes.io/part-of"}
            - set(item.body["metadata"].get("labels") or {})
        )
        for item in manifest_objects
    }
    assert {label: keys for label, keys in missing.items() if keys} == {}


def test_trafficschedule_crd_is_structural():
    crd = yaml.safe_load(OUR_CRD.read_text())

    for version in crd["spec"]["versions"]:
        violations = list(structural_violations(version["schema"]["openAPIV3Schema"]))
        assert violations == [], f"version {version['name']}"


def test_structural_check_rejects_untyped_and_mixed_nodes():
    schema = {
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "both": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            "typed_branch": {"anyOf": [{"type": "string"}, {"type": "integer"}], "type": "string"},
        },
    }

    violations = list(structural_violations(schema))

    assert "/untyped: no type" in violations
    assert "/both: properties and additionalProperties are both set" in violations
    assert "/typed_branch/anyOf/0: type is not allowed inside anyOf/allOf/oneOf/not" in violations


def test_builtin_check_rejects_unknown_field():
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "replicaz": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}},
        },
    }

    errors = builtin_errors(deployment)

    assert any("replicaz" in error for error in errors)


def test_crd_check_rejects_wrong_type_and_unknown_field(crd_schemas, manifest_objects):
    schedule = copy.deepcopy(objects_of_kind(manifest_objects, "TrafficSchedule")[0].body)
    schedule["spec"]["scheduler"]["policy"] = "greedy"
    schedule["spec"]["target"]["servce"] = "typo"

    errors = openapi_errors(schedule, crd_schemas[("scheduling.carbonrouter.io/v1alpha1", "TrafficSchedule")])

    assert any("/spec/scheduler/policy" in error and "greedy" in error for error in errors)
    assert "/spec/target/servce: field is not in the schema, the API server would drop it" in errors


def test_compositecontroller_check_rejects_misspelt_hook(crd_schemas, manifest_objects):
    controller = copy.deepcopy(objects_of_kind(manifest_objects, "CompositeController")[0].body)
    controller["spec"]["hooks"]["synch"] = controller["spec"]["hooks"].pop("sync")
    controller["spec"]["resyncPeriodSeconds"] = "five minutes"
    controller["spec"]["childResources"][0]["updateStrategy"]["method"] = "Inplace"

    errors = openapi_errors(
        controller, crd_schemas[("metacontroller.k8s.io/v1alpha1", "CompositeController")]
    )

    assert "/spec/hooks/synch: field is not in the schema, the API server would drop it" in errors
    assert any(error.startswith("/spec/resyncPeriodSeconds") for error in errors)
    assert any(error.startswith("/spec/childResources/0/updateStrategy/method") for error in errors)


def test_appproject_check_rejects_string_where_list_expected(crd_schemas, manifest_objects):
    project = copy.deepcopy(objects_of_kind(manifest_objects, "AppProject")[0].body)
    project["spec"]["sourceRepos"] = "https://github.com/your-org/carbonrouter.git"

    errors = openapi_errors(project, crd_schemas[("argoproj.io/v1alpha1", "AppProject")])

    assert any(error.startswith("/spec/sourceRepos") for error in errors)


def test_application_check_rejects_missing_project(manifest_objects):
    application = copy.deepcopy(objects_of_kind(manifest_objects, "Application")[0])
    del application.body["spec"]["project"]
    application.body["spec"]["syncPolicy"]["syncOptions"] = "ServerSideApply=true"

    errors = object_errors([application])[application.label]

    assert "/spec: must have required property 'project'" in errors or any("project" in e for e in errors)
    assert any(error.startswith("/spec/syncPolicy/syncOptions") for error in errors)


def test_application_check_rejects_misspelt_fields(manifest_objects):
    application = copy.deepcopy(
        next(
            item
            for item in objects_of_kind(manifest_objects, "Application")
            if item.body["spec"].get("ignoreDifferences")
        )
    )
    spec = application.body["spec"]
    spec["ignoreDiferences"] = spec.pop("ignoreDifferences")
    spec["syncPolicy"]["automated"]["selfheal"] = True
    spec["source"]["directory"] = {"includes": "*.yaml"}

    errors = object_errors([application])[application.label]

    suffix = ": field is not declared by Argo CD's API types, Argo CD would ignore it"
    assert "/spec/ignoreDiferences" + suffix in errors
    assert "/spec/syncPolicy/automated/selfheal" + suffix in errors
    assert "/spec/source/directory/includes" + suffix in errors


def test_keda_check_rejects_unknown_field():
    authentication = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {"secretTargetRef": [{"parameter": "host", "name": "s", "key": "url", "optional": True}]},
    }

    errors = keda_errors(authentication)

    assert any("optional" in error for error in errors)


def test_unknown_kind_is_an_error():
    item = ManifestObject(
        path=REPO / "x.yaml",
        index=0,
        body={"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
    )

    errors = object_errors([item])[item.label]

    assert errors == ["no published schema is known for example.com/v1 Widget; add a checker"]
