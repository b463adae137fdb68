"""Which related Deployments count as flavours, and what is read from them."""

from __future__ import annotations

import copy

from hooks.flavours import default_energy, discover_flavours
from tests.hooks.conftest import load_request


def related_deployments() -> dict:
    return load_request("sync-first-three-flavours.json")["related"]["Deployment.apps/v1"]


def test_flavours_sorted_most_precise_first():
    flavours = discover_flavours(related_deployments(), namespace="shop", service="checkout", selector={})
    assert [f.precision for f in flavours] == [100, 50, 25]
    assert [f.name for f in flavours] == ["high", "mid", "low"]
    assert flavours[2].queue == "shop.checkout.queue.precision-25"
    assert flavours[2].pod_labels == (("carbonstat.precision", "25"),)


def test_deployment_of_other_service_is_ignored():
    deployments = related_deployments()
    other = copy.deepcopy(deployments["checkout-high"])
    other["metadata"]["name"] = "search-high"
    other["metadata"]["labels"]["carbonrouter/parent-service"] = "search"
    other["metadata"]["labels"]["carbonstat.precision"] = "90"
    deployments["search-high"] = other
    flavours = discover_flavours(deployments, namespace="shop", service="checkout", selector={})
    assert [f.deployment for f in flavours] == ["checkout-high", "checkout-mid", "checkout-low"]


def test_reference_label_needs_selector_labels():
    deployments = related_deployments()
    for deployment in deployments.values():
        del deployment["metadata"]["labels"]["carbonrouter/parent-service"]
    deployments["checkout-low"]["metadata"]["labels"]["app"] = "other"
    flavours = discover_flavours(deployments, namespace="shop", service="checkout", selector={})
    assert [f.deployment for f in flavours] == ["checkout-high", "checkout-mid"]

    tiered = discover_flavours(deployments, namespace="shop", service="checkout", selector={"app": "other"})
    assert [f.deployment for f in tiered] == ["checkout-low"]


def test_deleting_deployment_is_not_a_flavour():
    deployments = related_deployments()
    deployments["checkout-mid"]["metadata"]["deletionTimestamp"] = "2026-12-04T19:59:00Z"
    flavours = discover_flavours(deployments, namespace="shop", service="checkout", selector={})
    assert [f.name for f in flavours] == ["high", "low"]


def test_carbonrouter_precision_label_wins():
    deployments = related_deployments()
    labels = deployments["checkout-mid"]["metadata"]["labels"]
    labels["carbonrouter/precision"] = "60"
    deployments["checkout-mid"]["spec"]["template"]["metadata"]["labels"]["carbonrouter/precision"] = "60"
    flavours = discover_flavours(deployments, namespace="shop", service="checkout", selector={})
    mid = next(f for f in flavours if f.name == "mid")
    assert mid.precision == 60
    assert mid.pod_labels == (("carbonrouter/precision", "60"),)


def test_default_energy_has_floor():
    assert default_energy(100) == 1.0
    assert default_energy(50) == 0.5
    assert default_energy(5) == 0.1
    assert default_energy(0) == 0.1
