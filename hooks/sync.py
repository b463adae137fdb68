"""The customize and sync hooks as pure functions of Metacontroller's request.

`sync` takes the observed parent, children and related objects and returns
the desired children, the status and `resyncAfterSeconds`. Its only I/O is
one engine call, bounded by the engine client's timeout. Metacontroller
deletes any child left out of the response, so every path returns either
the full rendered set or every observed child unchanged. When neither is
safe, it raises `CannotSync`. The HTTP shell turns that into a 429 (a stale
request without status: Metacontroller retries after Retry-After without a
warning event) or a 503 (a bug while rendering: the failure shows as a
SyncError event). Either way Metacontroller changes nothing.

The order of the steps matters: the spec is validated before flavours are
read, and both before the engine is called, so the condition that fails
names the first real cause rather than a consequence of it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from hooks.children import render_children
from hooks.config import HookConfig
from hooks.engine_client import EngineClient, EngineRejected, EngineUnavailable
from hooks.flavours import Flavour, FlavourError, default_selector, discover_flavours
from hooks.spec import InvalidSpec, validate_spec
from hooks.status import (
    Condition,
    decision_status,
    merge_status,
    parse_rfc3339,
    render_conditions,
)

log = logging.getLogger("hooks.sync")

DEPLOYMENT_KEY = "Deployment.apps/v1"
SERVICE_KEY = "Service.v1"
LAST_APPLIED = "metacontroller.k8s.io/last-applied-configuration"
SERVER_ANNOTATIONS = (LAST_APPLIED, "kubectl.kubernetes.io/last-applied-configuration")


class BadRequest(ValueError):
    """The request is not shaped like a Metacontroller hook request."""


class CannotSync(RuntimeError):
    """No safe response exists; Metacontroller must keep everything and retry.

    `transient` marks a condition expected to clear by itself on the next delivery.
    """

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass
class SyncContext:
    """Inputs shared by every step of one sync: the parent's identity and the observed state."""

    namespace: str
    name: str
    generation: int | None
    previous_status: dict
    observed: dict
    config: HookConfig
    now: datetime
    conditions: list[Condition] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def customize(request: dict) -> dict:
    """Ask Metacontroller for the target Service and its candidate flavour Deployments."""
    parent = _parent(request)
    spec = parent.get("spec") if isinstance(parent.get("spec"), dict) else {}
    target = spec.get("target") if isinstance(spec.get("target"), dict) else {}
    service = target.get("service")
    if not isinstance(service, str) or not service:
        return {"relatedResources": []}  # the sync hook reports the invalid spec
    selector = target.get("selector") if isinstance(target.get("selector"), dict) else {}
    return {"relatedResources": [
        {"apiVersion": "apps/v1", "resource": "deployments",
         "labelSelector": {"matchLabels": {"carbonrouter/parent-service": service}}},
        {"apiVersion": "apps/v1", "resource": "deployments",
         "labelSelector": {"matchLabels": selector or default_selector(service),
                           "matchExpressions": [{"key": "carbonstat.precision", "operator": "Exists"}]}},
        {"apiVersion": "v1", "resource": "services",
         "namespace": parent["metadata"]["namespace"], "names": [service]},
    ]}


def sync(request: dict, *, engine: EngineClient, config: HookConfig, now: datetime) -> dict:
    """Return Metacontroller's sync response for one TrafficSchedule.

    `now` is only used for condition transition times and resyncAfterSeconds;
    children never depend on it. Raises BadRequest or CannotSync.
    """
    parent = _parent(request)
    metadata = parent["metadata"]
    ctx = SyncContext(
        namespace=metadata["namespace"], name=metadata["name"], generation=metadata.get("generation"),
        previous_status=parent.get("status") or {}, observed=request.get("children") or {},
        config=config, now=now,
    )
    related = request.get("related") or {}

    # Validate the spec against the CRD schema; on failure keep every child.
    try:
        spec = validate_spec(parent.get("spec"), crd_path=config.crd_path)
    except InvalidSpec as error:
        log.info("schedule=%s event=spec-invalid problems=%d", ctx.key, len(error.problems))
        return _keep(ctx, Condition("SpecValid", "False", "InvalidSpec", str(error)))
    ctx.conditions.append(Condition("SpecValid", "True", "Valid", "spec matches the CRD schema"))

    # Discover flavours; none or a malformed one keeps every child.
    service = spec["target"]["service"]
    try:
        flavours = discover_flavours(related.get(DEPLOYMENT_KEY) or {}, namespace=ctx.namespace,
                                     service=service, selector=spec["target"].get("selector") or {})
    except FlavourError as error:
        return _keep(ctx, Condition("FlavoursDiscovered", "False", "InvalidFlavour", str(error)))
    if not flavours:
        message = (f"no Deployment labelled carbonrouter/parent-service={service} or carrying "
                   f"carbonstat.precision and {_selector_text(spec, service)}")
        return _keep(ctx, Condition("FlavoursDiscovered", "False", "NoFlavours", message))
    ctx.conditions.append(Condition("FlavoursDiscovered", "True", "Found", _flavour_text(flavours)))

    # Ask the engine; fall back to the last decision stored in the status.
    decision, reachable = _decision(ctx, spec=spec, flavours=flavours, engine=engine)
    if decision is None:
        return _keep(ctx, ctx.conditions.pop(), retry=True)
    return _render(ctx, spec=spec, flavours=flavours, decision=decision, reachable=reachable,
                   related=related)


def _render(ctx: SyncContext, *, spec: dict, flavours: list[Flavour], decision: dict, reachable: bool,
            related: dict) -> dict:
    """Render the children from a decision and report the status that goes with them."""
    # A render failure is a bug, and CannotSync keeps Metacontroller from acting on it.
    try:
        children, ceilings = render_children(namespace=ctx.namespace, schedule=ctx.name, spec=spec,
                                             flavours=flavours, decision=decision, config=ctx.config)
    except Exception as error:
        log.exception("schedule=%s event=render-failed", ctx.key)
        raise CannotSync(f"rendering children failed: {type(error).__name__}: {error}") from error

    clamped = [note for note in (c.clamp_note for c in ceilings) if note]
    clamp_message = "; ".join(clamped) or "every engine ceiling is within its replica bounds"
    ctx.conditions.append(Condition("CeilingsClamped", "True" if clamped else "False",
                                    "CeilingOutOfBounds" if clamped else "WithinBounds", clamp_message))
    ctx.conditions.append(_ready(ctx, children=children, reachable=reachable,
                                 target_problem=_target_problem(related, spec=spec)))
    fresh = decision_status(decision=decision, flavours=flavours, ceilings=ceilings)
    resync = _resync_seconds(ctx, decision=decision, spec=spec) if reachable else ctx.config.retry_seconds
    return _response(ctx, children=children, fresh=fresh, resync=resync)


def engine_configuration(*, spec: dict, flavours: list[Flavour], previous_status: dict) -> dict:
    """Build the body of PUT /config: scheduler spec, flavours, replica bounds and stored ledger state."""
    configuration = {
        "scheduler": spec["scheduler"],
        "flavours": [{"name": f.name, "precision": f.precision, "energy": f.energy, "enabled": True}
                     for f in flavours],
        "componentBounds": {"router": spec["router"]["replicas"], "consumer": spec["consumer"]["replicas"],
                            "target": spec["target"]["replicas"]},
    }
    state = {key: previous_status[key] for key in ("ledger", "lastDecision")
             if isinstance(previous_status.get(key), dict)}
    if state:
        configuration["state"] = state
    return configuration


def _decision(ctx: SyncContext, *, spec: dict, flavours: list[Flavour],
              engine: EngineClient) -> tuple[dict | None, bool]:
    body = engine_configuration(spec=spec, flavours=flavours, previous_status=ctx.previous_status)
    try:
        decision = engine.put_config(ctx.namespace, ctx.name, body)
    except EngineRejected as error:
        log.info("schedule=%s event=engine-rejected error=%s", ctx.key, error)
        details = "; ".join(f"{d.get('field')}: {d.get('message')}"
                            for d in error.details if isinstance(d, dict))
        ctx.conditions.append(Condition("SpecValid", "False", "EngineRejected", details or str(error)))
        return None, False
    except EngineUnavailable as error:
        log.warning("schedule=%s event=engine-unavailable error=%s", ctx.key, error)
        cached = ctx.previous_status.get("lastDecision")
        if not isinstance(cached, dict) or not isinstance((cached.get("processing") or {}), dict):
            ctx.conditions.append(Condition("EngineReachable", "False", "NoDecision",
                                            f"{error}; no earlier decision to render from, children kept"))
            return None, False
        ctx.conditions.append(Condition("EngineReachable", "False", "EngineUnavailable",
                                        f"{error}; rendered from the decision valid until "
                                        f"{cached.get('validUntil', 'unknown')}"))
        return cached, False
    received = f"policy {decision.get('policy')} valid until {decision.get('validUntil')}"
    ctx.conditions.append(Condition("EngineReachable", "True", "DecisionReceived", received))
    return decision, True


def _target_problem(related: dict, *, spec: dict) -> str | None:
    """Describe what is wrong with the target Service; return None when it has the spec's port."""
    name, port = spec["target"]["service"], spec["target"]["port"]
    service = (related.get(SERVICE_KEY) or {}).get(name)
    if service is None:
        return f"target Service {name} not found in the schedule's namespace"
    ports = [p.get("port") for p in (service.get("spec") or {}).get("ports") or []]
    if port not in ports:
        return f"target Service {name} has no port {port} (ports: {ports}); set spec.target.port"
    return None


def _ready(ctx: SyncContext, *, children: list[dict], reachable: bool,
           target_problem: str | None) -> Condition:
    if not reachable:
        return Condition("Ready", "False", "EngineUnavailable",
                         "children rendered from the last stored decision")
    if target_problem:
        return Condition("Ready", "False", "TargetServiceInvalid", target_problem)
    missing = [f"{c['kind']}/{c['metadata']['name']}" for c in children
               if not _observed(ctx.observed, c, namespace=ctx.namespace)]
    if missing:
        return Condition("Ready", "False", "ChildrenPending", f"waiting for {', '.join(missing)}")
    return Condition("Ready", "True", "Synced", f"{len(children)} children in place")


def _observed(observed: dict, child: dict, *, namespace: str) -> bool:
    # Hook version v1 keys children by name, v2 by namespace/name.
    objects = observed.get(f"{child['kind']}.{child['apiVersion']}") or {}
    name = child["metadata"]["name"]
    return name in objects or f"{namespace}/{name}" in objects


def _keep(ctx: SyncContext, failed: Condition, *, retry: bool = False) -> dict:
    """Respond with every observed child unchanged and a status saying why."""
    children = existing_children(ctx.observed)
    if children and not ctx.previous_status:
        # A delivery without parent.status would overwrite the real status with
        # conditions only; refusing makes Metacontroller keep it and retry.
        raise CannotSync(f"{failed.type}={failed.status} ({failed.message}) and the request carries no "
                         "parent.status to preserve; retry later", transient=True)
    log.info("schedule=%s event=children-kept condition=%s reason=%s children=%d",
             ctx.key, failed.type, failed.reason, len(children))
    ctx.conditions = [c for c in ctx.conditions if c.type != failed.type]
    ctx.conditions.append(failed)
    ctx.conditions.append(Condition("Ready", "False", failed.reason, failed.message))
    resync = ctx.config.retry_seconds if retry else None
    return _response(ctx, children=children, fresh={}, resync=resync)


def _response(ctx: SyncContext, *, children: list[dict], fresh: dict, resync: float | None) -> dict:
    conditions = render_conditions(ctx.conditions, previous=ctx.previous_status.get("conditions") or [],
                                   generation=ctx.generation, now=ctx.now)
    status = merge_status(ctx.previous_status, fresh, conditions=conditions, generation=ctx.generation)
    response = {"status": status, "children": children}
    if resync is not None:
        response["resyncAfterSeconds"] = resync
    return response


def existing_children(observed: dict) -> list[dict]:
    """Return observed children as desired objects, in a stable order.

    The object the hook returned earlier is preferred: Metacontroller stores it
    in the last-applied annotation. Otherwise server-set fields are dropped.
    """
    kept = []
    for kind_key in sorted(observed):
        objects = observed[kind_key] or {}
        for name in sorted(objects):
            kept.append(_as_desired(objects[name]))
    return kept


def _as_desired(child: dict) -> dict:
    metadata = child.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    try:
        applied = json.loads(annotations.get(LAST_APPLIED) or "null")
    except ValueError:
        applied = None
    if isinstance(applied, dict) and applied.get("kind") and (applied.get("metadata") or {}).get("name"):
        return applied
    desired = {key: value for key, value in child.items() if key not in ("status", "metadata")}
    kept_metadata = {key: metadata[key] for key in ("name", "namespace", "labels") if key in metadata}
    kept_annotations = {k: v for k, v in annotations.items() if k not in SERVER_ANNOTATIONS}
    if kept_annotations:
        kept_metadata["annotations"] = kept_annotations
    desired["metadata"] = kept_metadata
    return desired


def _resync_seconds(ctx: SyncContext, *, decision: dict, spec: dict) -> float:
    """Return the seconds until the decision expires, within [1, discoveryInterval or the maximum]."""
    upper = float(spec["scheduler"].get("discoveryInterval", ctx.config.max_resync_seconds))
    upper = min(upper, ctx.config.max_resync_seconds)
    valid_until = parse_rfc3339(decision.get("validUntil"))
    if valid_until is None:
        return min(ctx.config.retry_seconds, upper)
    return round(min(max((valid_until - ctx.now).total_seconds(), 1.0), upper), 3)


def _parent(request: object) -> dict:
    if not isinstance(request, dict):
        raise BadRequest("request body must be a JSON object with a 'parent' field")
    parent = request.get("parent")
    if not isinstance(parent, dict) or not isinstance(parent.get("metadata"), dict):
        raise BadRequest("request has no 'parent' object with 'metadata'")
    metadata = parent["metadata"]
    for key in ("name", "namespace"):
        if not isinstance(metadata.get(key), str) or not metadata[key]:
            raise BadRequest(f"parent.metadata.{key} is missing; TrafficSchedule is namespaced")
    children = request.get("children")
    if children is not None and not (isinstance(children, dict)
                                     and all(isinstance(v, dict) or v is None for v in children.values())):
        raise BadRequest("'children' must map '<Kind>.<apiVersion>' to objects keyed by name")
    return parent


def _selector_text(spec: dict, service: str) -> str:
    selector = spec["target"].get("selector") or default_selector(service)
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def _flavour_text(flavours: list[Flavour]) -> str:
    return ", ".join(f"{f.name} (precision {f.precision}, Deployment {f.deployment})" for f in flavours)
