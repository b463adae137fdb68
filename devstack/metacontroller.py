"""Metacontroller's side of the hook calls, done locally on plain dicts.

Metacontroller builds the sync request from the parent, the children it
owns and the related objects the customize hook selected. These functions
build the same shapes from files, so `Registrar` can drive the real hooks
endpoints without an API server. Children and related objects are keyed
`<Kind>.<apiVersion>` then name, label selectors are applied as Kubernetes
applies them, and the CompositeController is read from `metacontroller/`.
"""

from __future__ import annotations

import copy
import uuid

import yaml

from devstack.settings import REPO_ROOT


class SelectorError(ValueError):
    """A label selector uses an operator Kubernetes does not define."""


# Kinds of the resources a CompositeController names by plural, to build Metacontroller's
# `<Kind>.<apiVersion>` keys of `children`.
KINDS = {
    "deployments": "Deployment",
    "services": "Service",
    "scaledobjects": "ScaledObject",
    "triggerauthentications": "TriggerAuthentication",
    "destinationrules": "DestinationRule",
    "virtualservices": "VirtualService",
}


def load_controller() -> dict:
    """Return the CompositeController from `metacontroller/`, or a minimal one if none is there yet."""
    for path in sorted((REPO_ROOT / "metacontroller").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CompositeController":
                return doc
    return {
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": {"name": "trafficschedule-controller"},
        "spec": {
            "parentResource": {
                "apiVersion": "scheduling.carbonrouter.io/v1alpha1",
                "resource": "trafficschedules",
            }
        },
    }


def group_objects(objects: list[dict]) -> dict[str, dict[str, dict]]:
    """Group objects by `<Kind>.<apiVersion>` then name, as Metacontroller's `children` and `related`."""
    grouped: dict[str, dict[str, dict]] = {}
    for obj in objects:
        key = f"{obj['kind']}.{obj['apiVersion']}"
        grouped.setdefault(key, {})[obj["metadata"]["name"]] = obj
    return grouped


def child_types(controller: dict) -> list[str]:
    """Return the `<Kind>.<apiVersion>` key of every child resource the controller declares."""
    keys = []
    for rule in controller.get("spec", {}).get("childResources", []):
        resource = rule["resource"]
        kind = KINDS.get(resource) or resource.removesuffix("s").capitalize()
        keys.append(f"{kind}.{rule['apiVersion']}")
    return keys


def selector_matches(selector: dict, labels: dict) -> bool:
    """Apply a Kubernetes label selector (matchLabels and matchExpressions) to a label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        matched = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(operator)
        if matched is None:
            raise SelectorError(f"unknown label selector operator {operator!r} on key {key!r}")
        if not matched:
            return False
    return True


def select_related(rules: list[dict], objects: list[dict], *, namespace: str) -> list[dict]:
    """Return the objects any `relatedResources` rule selects, as Metacontroller would, each once.

    A namespaced parent only receives objects of its own namespace.
    """
    selected = []
    for obj in objects:
        metadata = obj["metadata"]
        if metadata.get("namespace", namespace) != namespace:
            continue
        for rule in rules:
            kind = KINDS.get(rule.get("resource", ""))
            if obj.get("kind") != kind or obj.get("apiVersion") != rule.get("apiVersion"):
                continue
            if "names" in rule:
                chosen = metadata["name"] in rule["names"]
            else:
                chosen = selector_matches(rule.get("labelSelector") or {}, metadata.get("labels") or {})
            if chosen:
                selected.append(obj)
                break
    return selected


def sync_request(
    *, controller: dict, schedule: dict, status: dict | None, children: list[dict], related: list[dict]
) -> dict:
    """Build the body Metacontroller would post to the sync hook for `schedule` (the parent)."""
    parent = copy.deepcopy(schedule)
    metadata = parent["metadata"]
    key = f"{metadata['namespace']}/{metadata['name']}"
    metadata.setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, "devstack/" + key)))
    metadata.setdefault("generation", 1)
    if status:
        parent["status"] = status

    observed = {child_type: {} for child_type in child_types(controller)}
    observed.update(group_objects(children))
    return {
        "controller": controller,
        "parent": parent,
        "children": observed,
        "related": group_objects(related),
        "finalizing": False,
    }
