"""Shared pieces of the hook tests: fixture loading, a fixed clock and schema validation."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import kubernetes_validate
import pytest
from cloudcoil.models.istio.networking import v1 as istio
from cloudcoil.models.keda import v1alpha1 as keda

from hooks.config import HookConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hooks"
NOW = datetime(2026, 12, 4, 20, 0, 0, tzinfo=UTC)
CUSTOM_MODELS = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("networking.istio.io/v1", "DestinationRule"): istio.DestinationRule,
    ("networking.istio.io/v1", "VirtualService"): istio.VirtualService,
}


def load_request(name: str) -> dict:
    """Return a fresh copy of a recorded Metacontroller request."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def children_by_kind(response: dict, kind: str) -> list[dict]:
    return [child for child in response["children"] if child["kind"] == kind]


def child_named(response: dict, kind: str, name: str) -> dict:
    matches = [c for c in response["children"] if c["kind"] == kind and c["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def condition(response: dict, kind: str) -> dict:
    matches = [c for c in response["status"]["conditions"] if c["type"] == kind]
    assert len(matches) == 1, f"expected one {kind} condition in {response['status']['conditions']}"
    return matches[0]


def validate_child(child: dict, *, namespace: str = "shop") -> None:
    """Validate one rendered child against its published schema; raise on any error.

    Built-in kinds go through kubernetes-validate (Kubernetes 1.30, strict: unknown
    fields fail); KEDA and Istio kinds through cloudcoil's generated models with
    strict types and extra fields forbidden.
    """
    document = copy.deepcopy(child)
    document["metadata"].setdefault("namespace", namespace)
    model = CUSTOM_MODELS.get((document["apiVersion"], document["kind"]))
    if model is None:
        kubernetes_validate.validate(document, "1.30", strict=True)
    else:
        model.model_validate(document, strict=True, extra="forbid")


def observed_children(response: dict, *, namespace: str = "shop") -> dict:
    """Group a response's children as Metacontroller presents them on the next sync."""
    grouped = {
        key: {}
        for key in (
            "Deployment.apps/v1",
            "Service.v1",
            "ScaledObject.keda.sh/v1alpha1",
            "TriggerAuthentication.keda.sh/v1alpha1",
            "DestinationRule.networking.istio.io/v1",
            "VirtualService.networking.istio.io/v1",
        )
    }
    for child in response["children"]:
        observed = copy.deepcopy(child)
        observed["metadata"]["namespace"] = namespace
        observed["metadata"]["annotations"] = {
            "metacontroller.k8s.io/last-applied-configuration": json.dumps(child, sort_keys=True)
        }
        grouped[f"{child['kind']}.{child['apiVersion']}"][child["metadata"]["name"]] = observed
    return grouped


@pytest.fixture
def config() -> HookConfig:
    return HookConfig()
