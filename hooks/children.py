"""Rendering of a TrafficSchedule's children from the Jinja templates.

Input: the parent's identity, its normalised spec, the discovered flavours
and an engine decision. Output: the flat, ordered list of child objects the
sync hook returns. Only the decision's replica ceilings reach the children,
as `maxReplicaCount`. Weights travel to the router at runtime through the
engine API, so a new weight mix does not rewrite any child. Nothing here
reads the clock or draws random numbers: the same input renders the same
objects, which is what keeps Metacontroller from patching children on
every resync.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from hooks.config import HookConfig
from hooks.flavours import Flavour
from hooks.names import COMPONENT_LABEL, SCHEDULE_LABEL, child_name, label_value

ROUTER_PORT = 8000
CONSUMER_METRICS_PORT = 9100
ROUTING_HEADER = "x-carbonrouter"
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Order of the rendered children; Metacontroller does not care, reviewers do.
SINGLE_TEMPLATES = ("triggerauthentication", "router-deployment", "router-service", "router-scaledobject",
                    "consumer-deployment", "consumer-service", "consumer-scaledobject")
MESH_TEMPLATES = ("destinationrule", "virtualservice")
# Context sections each template reads. Passing only these keeps the render
# cache warm for templates a new replica ceiling does not touch, and
# StrictUndefined makes a template fail if it reads anything else.
TEMPLATE_INPUTS = {
    "triggerauthentication": ("broker",),
    "router-deployment": ("router",),
    "router-service": ("router",),
    "router-scaledobject": ("router", "router_scaling"),
    "consumer-deployment": ("consumer",),
    "consumer-service": ("consumer",),
    "consumer-scaledobject": ("consumer", "consumer_scaling", "flavours", "broker"),
    "destinationrule": ("mesh", "flavours"),
    "virtualservice": ("mesh", "flavours"),
}


@dataclass(frozen=True)
class Ceiling:
    """A ScaledObject's replica maximum after clamping the engine's ceiling into its bounds."""

    component: str
    requested: int | None
    applied: int
    min_replicas: int

    @property
    def clamp_note(self) -> str | None:
        if self.requested is None or self.requested == self.applied:
            return None
        side = "minReplicaCount" if self.requested < self.applied else "the spec's max"
        return f"{self.component} ceiling {self.requested} clamped to {self.applied} ({side})"


def clamp_ceiling(component: str, *, ceilings: dict, bounds: dict, key: str | None = None) -> Ceiling:
    """Clamp the engine's ceiling for `key` (default `component`) into [max(min, 1), max].

    A missing or non-integer ceiling falls back to the spec's max. The floor of 1
    is KEDA's: maxReplicaCount must allow at least one replica.
    """
    raw = ceilings.get(key or component)
    requested = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    lowest = max(bounds["min"], 1)
    proposed = bounds["max"] if requested is None else requested
    applied = min(max(proposed, lowest), max(bounds["max"], lowest))
    return Ceiling(component=component, requested=requested, applied=applied, min_replicas=bounds["min"])


@functools.lru_cache(maxsize=4)
def template_environment(templates_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the image; no stat() per render
    )


def render_template(templates_dir: Path, name: str, context: dict | str) -> dict:
    """Render one template with `context` (a dict or its canonical JSON) and return the object.

    Parsing YAML dominates a sync's CPU time, and a steady schedule renders the
    same context on every resync, so the parsed result is cached by template and
    canonical context JSON. The returned object is a fresh copy each time.
    """
    key = context if isinstance(context, str) else canonical_json(context)
    return json.loads(_rendered_json(templates_dir, name, key))


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# NOTE: 1,024 entries hold about 80 schedules' children (12 templates each, a
# few kB per entry). With more schedules per hooks process, resyncs start to
# pay the cold rendering cost (about 7 ms of CPU in bench/hooks_bench.py).
@functools.lru_cache(maxsize=1024)
def _rendered_json(templates_dir: Path, name: str, context_json: str) -> str:
    template = template_environment(templates_dir).get_template(f"{name}.yaml.j2")
    document = yaml.load(template.render(**json.loads(context_json)), Loader=YAML_LOADER)  # noqa: S506
    return json.dumps(document, separators=(",", ":"))


def base_labels(schedule: str) -> dict[str, str]:
    value = label_value(schedule)
    return {
        "app.kubernetes.io/name": "carbonrouter",
        "app.kubernetes.io/instance": value,
        "app.kubernetes.io/part-of": "carbonrouter",
        "app.kubernetes.io/managed-by": "metacontroller",
        SCHEDULE_LABEL: value,
    }


def component_labels(schedule: str, component: str) -> tuple[dict, dict]:
    """Return (labels, selector) of one component's objects and pods."""
    labels = {**base_labels(schedule), COMPONENT_LABEL: component}
    selector = {SCHEDULE_LABEL: labels[SCHEDULE_LABEL], COMPONENT_LABEL: component}
    return labels, selector


def workload_env(*, namespace: str, schedule: str, spec: dict, flavours: list[Flavour],
                 config: HookConfig) -> list[dict]:
    """Environment shared by router and consumer containers, in a fixed order.

    Variable names are the ones `buffer.config.BufferConfig.from_env` reads.
    """
    broker = spec["broker"]
    flavour_list = ",".join(f"{f.name}:{f.precision}" for f in flavours)
    return [
        {"name": "ENGINE_URL", "value": config.workload_engine_url},
        {"name": "SCHEDULE_NAMESPACE", "value": namespace},
        {"name": "SCHEDULE_NAME", "value": schedule},
        {"name": "SERVICE_NAME", "value": spec["target"]["service"]},
        {"name": "RABBITMQ_URL", "valueFrom": {"secretKeyRef": {
            "name": broker.get("secretName", config.rabbitmq_secret),
            "key": broker.get("secretKey", config.rabbitmq_secret_key)}}},
        {"name": "FLAVOURS", "value": flavour_list},
        {"name": "REQUEST_TIMEOUT", "value": str(spec["router"]["timeoutSeconds"])},
    ]


def render_children(*, namespace: str, schedule: str, spec: dict, flavours: list[Flavour],
                    decision: dict, config: HookConfig) -> tuple[list[dict], list[Ceiling]]:
    """Render every child, ordered, and return them with the ceilings applied.

    This function is longer than most because it only assembles the template
    context; every rule it applies lives in a named helper above.
    """
    ceilings = (decision.get("processing") or {}).get("ceilings") or {}
    target, router, consumer = spec["target"], spec["router"], spec["consumer"]
    env = workload_env(namespace=namespace, schedule=schedule, spec=spec, flavours=flavours, config=config)
    host = f"{target['service']}.{namespace}.svc.{config.cluster_domain}"

    # Ceilings first: they decide maxReplicaCount and the CeilingsClamped condition.
    router_ceiling = clamp_ceiling("router", ceilings=ceilings, bounds=router["replicas"])
    consumer_ceiling = clamp_ceiling("consumer", ceilings=ceilings, bounds=consumer["replicas"])
    flavour_ceilings = [
        clamp_ceiling(f"flavour {f.name}", ceilings=ceilings, bounds=target["replicas"],
                      key=f.name if f.name in ceilings else "target")
        for f in flavours
    ]

    router_labels, router_selector = component_labels(schedule, "router")
    consumer_labels, consumer_selector = component_labels(schedule, "consumer")
    context = {
        "router": {
            "name": child_name(schedule, "router"), "labels": router_labels, "selector": router_selector,
            "image": router.get("image", config.router_image), "port": ROUTER_PORT,
            "env": env + [
                {"name": "ROUTER_BIND", "value": f"0.0.0.0:{ROUTER_PORT}"},
                {"name": "FORCING_ENABLED", "value": str(router["allowForcedFlavour"]).lower()},
            ],
            "resources": router["resources"],
            # gunicorn waits up to the request timeout + 2 s for requests in flight on
            # SIGTERM; the pod's grace period must outlast that or replies are cut off.
            "grace_seconds": math.ceil(float(router["timeoutSeconds"])) + 5,
        },
        "router_scaling": {"min_replicas": router["replicas"]["min"], "max_replicas": router_ceiling.applied,
                           "cpu_utilization": router["cpuUtilization"]},
        "consumer": {
            "name": child_name(schedule, "consumer"), "labels": consumer_labels,
            "selector": consumer_selector, "image": consumer.get("image", config.consumer_image),
            "port": CONSUMER_METRICS_PORT,
            "env": env + [
                {"name": "TARGET_URL", "value": f"http://{host}:{target['port']}"},
                {"name": "CONSUMER_PREFETCH", "value": str(consumer["prefetch"])},
                {"name": "CONSUMER_METRICS_PORT", "value": str(CONSUMER_METRICS_PORT)},
            ],
            "resources": consumer["resources"], "queue_length": consumer["queueLength"],
        },
        "consumer_scaling": {"min_replicas": consumer["replicas"]["min"],
                             "max_replicas": consumer_ceiling.applied},
        "flavours": [flavour_context(f) for f in flavours],
        "target": {"queue_length": target["queueLength"]},
        "broker": {
            "auth_name": child_name(schedule, "rabbitmq"), "labels": base_labels(schedule),
            "secret_name": spec["broker"].get("secretName", config.rabbitmq_secret),
            "secret_key": spec["broker"].get("secretKey", config.rabbitmq_secret_key),
        },
        "mesh": {"name": child_name(schedule), "labels": base_labels(schedule), "host": host,
                 "port": target["port"], "header": ROUTING_HEADER},
    }

    templates = config.templates_dir
    children = [render_template(templates, name, _inputs(context, name)) for name in SINGLE_TEMPLATES]
    for flavour, ceiling in zip(flavours, flavour_ceilings, strict=True):
        scaler = {"name": child_name(schedule, "flavour", flavour.deployment),
                  "labels": {**base_labels(schedule), COMPONENT_LABEL: "flavour-scaler"},
                  "flavour": flavour_context(flavour), "min_replicas": ceiling.min_replicas,
                  "max_replicas": ceiling.applied}
        scaler_context = {"scaler": scaler, "target": context["target"], "broker": context["broker"]}
        children.append(render_template(templates, "flavour-scaledobject", scaler_context))
    children.extend(render_template(templates, name, _inputs(context, name)) for name in MESH_TEMPLATES)
    return children, [router_ceiling, consumer_ceiling, *flavour_ceilings]


def _inputs(context: dict, template: str) -> dict:
    return {section: context[section] for section in TEMPLATE_INPUTS[template]}


def flavour_context(flavour: Flavour) -> dict:
    header_values = [str(flavour.precision)]
    if flavour.name != str(flavour.precision):
        header_values.append(flavour.name)
    return {"name": flavour.name, "subset": flavour.subset, "queue": flavour.queue,
            "deployment": flavour.deployment, "pod_labels": dict(flavour.pod_labels),
            "header_values": header_values}
