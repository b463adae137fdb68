"""Discovery of a target Service's flavours from related Deployments.

A Deployment is a flavour of `spec.target.service` when it carries
`carbonrouter/parent-service: <service>`, or when it carries the reference's
`carbonstat.precision` label and every label of `spec.target.selector`
(default `app: <service>`). Its precision (0-100, an integer) comes from
`carbonrouter/precision` or `carbonstat.precision`. Its energy per request,
relative to the most precise flavour, comes from the `carbonrouter.io/energy`
annotation, else precision/100 with a floor of 0.1. Its name comes from the
`carbonrouter/flavour` label, else `precision-<p>`.

Discovery is all or nothing: one malformed flavour Deployment makes the whole
discovery fail with a message, so the sync keeps the existing children
instead of dropping that flavour's routing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hooks.names import queue_name

PARENT_SERVICE_LABEL = "carbonrouter/parent-service"
PRECISION_LABELS = ("carbonrouter/precision", "carbonstat.precision")
FLAVOUR_LABEL = "carbonrouter/flavour"
ENERGY_ANNOTATION = "carbonrouter.io/energy"
MIN_DEFAULT_ENERGY = 0.1
FLAVOUR_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Flavour:
    """One flavour Deployment as the sync hook uses it (precision on the 0-100 scale)."""

    name: str
    precision: int
    energy: float
    deployment: str
    queue: str
    pod_labels: tuple[tuple[str, str], ...]  # labels that select only this flavour's pods

    @property
    def subset(self) -> str:
        return f"precision-{self.precision}"


class FlavourError(ValueError):
    """Flavour discovery failed; the message names the Deployment and label."""


def default_energy(precision: int) -> float:
    """Energy per request assumed when a Deployment has no energy annotation."""
    return max(MIN_DEFAULT_ENERGY, precision / 100.0)


def default_selector(service: str) -> dict[str, str]:
    """Labels a `carbonstat.precision` Deployment must carry when the spec sets none."""
    return {"app": service}


def is_flavour_of(deployment: dict, *, service: str, selector: dict[str, str]) -> bool:
    """Return whether `deployment` is a flavour of `service` by its labels."""
    metadata = deployment.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return False
    labels = metadata.get("labels") or {}
    if labels.get(PARENT_SERVICE_LABEL) == service:
        return True
    if PARENT_SERVICE_LABEL in labels:
        return False  # explicitly belongs to another service
    required = selector or default_selector(service)
    return "carbonstat.precision" in labels and all(labels.get(k) == v for k, v in required.items())


def discover_flavours(deployments: dict, *, namespace: str, service: str,
                      selector: dict[str, str]) -> list[Flavour]:
    """Return the flavours among `deployments` (name -> object), most precise first.

    Raises FlavourError when a flavour Deployment is malformed or two share a
    precision or a name (their queues or subsets would collide).
    """
    flavours = []
    for key in sorted(deployments):
        deployment = deployments[key]
        if is_flavour_of(deployment, service=service, selector=selector):
            flavours.append(_flavour_from(deployment, namespace=namespace, service=service))
    _reject_duplicates(flavours)
    return sorted(flavours, key=lambda flavour: (-flavour.precision, flavour.name))


def _flavour_from(deployment: dict, *, namespace: str, service: str) -> Flavour:
    metadata = deployment["metadata"]
    name = metadata["name"]
    labels = metadata.get("labels") or {}
    pod_labels = (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels") or {}

    label_key = next((key for key in PRECISION_LABELS if key in labels), None)
    if label_key is None:
        raise FlavourError(f"Deployment {name}: missing label {PRECISION_LABELS[0]} "
                           f"(or {PRECISION_LABELS[1]}) with its precision 0-100")
    precision = _precision(labels[label_key], where=f"Deployment {name} label {label_key}")

    pod_key = next((key for key in PRECISION_LABELS if key in pod_labels), None)
    if pod_key is None or pod_labels[pod_key] != labels[label_key]:
        raise FlavourError(f"Deployment {name}: pod template must carry {label_key}="
                           f"{labels[label_key]!r} so the Istio subset can select its pods")

    flavour_name = labels.get(FLAVOUR_LABEL) or f"precision-{precision}"
    if not FLAVOUR_NAME.match(flavour_name):
        raise FlavourError(f"Deployment {name}: label {FLAVOUR_LABEL}={flavour_name!r} must be "
                           "lowercase letters, digits and dashes")

    annotations = metadata.get("annotations") or {}
    energy = _energy(annotations.get(ENERGY_ANNOTATION), precision=precision, deployment=name)
    return Flavour(
        name=flavour_name,
        precision=precision,
        energy=energy,
        deployment=name,
        queue=queue_name(namespace=namespace, service=service, precision=precision),
        pod_labels=((pod_key, pod_labels[pod_key]),),
    )


def _precision(raw: str, *, where: str) -> int:
    try:
        precision = int(raw)
    except (TypeError, ValueError):
        raise FlavourError(f"{where}={raw!r} is not a whole number; use 0-100, e.g. \"50\"") from None
    if not 0 <= precision <= 100:
        raise FlavourError(f"{where}={raw!r} is outside 0-100")
    return precision


def _energy(raw: str | None, *, precision: int, deployment: str) -> float:
    if raw is None:
        return default_energy(precision)
    try:
        energy = float(raw)
    except ValueError:
        raise FlavourError(f"Deployment {deployment}: annotation {ENERGY_ANNOTATION}={raw!r} "
                           "is not a number; use the energy per request relative to the "
                           "most precise flavour, e.g. \"0.5\"") from None
    if not 0 < energy <= 10:
        raise FlavourError(f"Deployment {deployment}: annotation {ENERGY_ANNOTATION}={raw!r} "
                           "must be above 0 and at most 10")
    return energy


def _reject_duplicates(flavours: list[Flavour]) -> None:
    seen_precision: dict[int, str] = {}
    seen_name: dict[str, str] = {}
    for flavour in flavours:
        if flavour.precision in seen_precision:
            raise FlavourError(f"Deployments {seen_precision[flavour.precision]} and "
                               f"{flavour.deployment} both have precision {flavour.precision}; "
                               "each flavour needs its own precision (its queue is named by it)")
        if flavour.name in seen_name:
            raise FlavourError(f"Deployments {seen_name[flavour.name]} and {flavour.deployment} "
                               f"are both named flavour {flavour.name!r}")
        seen_precision[flavour.precision] = flavour.deployment
        seen_name[flavour.name] = flavour.deployment
