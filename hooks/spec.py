"""Validation and normalisation of a TrafficSchedule spec.

The schema is read from the CRD file itself, so the API server and the hook
enforce the same rules. Two translations turn the CRD's structural schema
into plain JSON Schema:
- an object node that declares `properties` gets `additionalProperties:
  false`, because the API server silently prunes undeclared fields and a
  typo should be reported, not lost;
- `x-kubernetes-*` keywords are left in place (JSON Schema ignores them).

After the schema passes, `normalise_spec` turns number-or-string fields into
numbers, fills documented defaults and checks what a schema cannot express
(a minimum above its maximum, a numeric string out of range).
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

DEFAULT_REPLICAS = {
    "target": {"min": 1, "max": 10},
    "router": {"min": 1, "max": 5},
    "consumer": {"min": 1, "max": 5},
}
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
DEFAULTS = {
    "target.port": 80,
    "target.queueLength": 10,
    "router.cpuUtilization": 60,
    "router.timeoutSeconds": 30,
    "consumer.queueLength": 20,
    "consumer.prefetch": 10,
}
DECIMAL_FIELDS = ("targetError", "creditMin", "creditMax", "throttleMin",
                  "throttleIntensityFloor", "throttleIntensityCeiling")
WHOLE_FIELDS = ("creditWindow", "validFor", "discoveryInterval", "carbonTimeout", "carbonCacheTTL")


@dataclass(frozen=True)
class SpecProblem:
    """One invalid field: its dotted path and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidSpec(ValueError):
    """The spec breaks the CRD schema or a cross-field rule."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


@functools.lru_cache(maxsize=8)
def load_crd_schema(crd_path: Path, section: str = "spec") -> dict:
    """Return the JSON Schema of `.spec` or `.status` from the storage version of the CRD file."""
    with open(crd_path, encoding="utf-8") as handle:
        crd = yaml.safe_load(handle)
    storage = [version for version in crd["spec"]["versions"] if version.get("storage")]
    if len(storage) != 1:
        raise ValueError(f"{crd_path}: expected exactly one storage version, found {len(storage)}")
    schema = copy.deepcopy(storage[0]["schema"]["openAPIV3Schema"]["properties"][section])
    _forbid_undeclared_fields(schema)
    return schema


def load_spec_schema(crd_path: Path) -> dict:
    """Return the JSON Schema of `.spec` from the CRD file."""
    return load_crd_schema(crd_path, "spec")


def _forbid_undeclared_fields(node: dict) -> None:
    if not isinstance(node, dict):
        return
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node.setdefault("additionalProperties", False)
    for child in (node.get("properties") or {}).values():
        _forbid_undeclared_fields(child)
    if isinstance(node.get("additionalProperties"), dict):
        _forbid_undeclared_fields(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        _forbid_undeclared_fields(node["items"])


@functools.lru_cache(maxsize=4)
def _validator(crd_path: Path) -> Draft202012Validator:
    return Draft202012Validator(load_spec_schema(crd_path))


def schema_problems(spec: object, *, crd_path: Path) -> list[SpecProblem]:
    """List every schema violation of `spec`, ordered by field path."""
    problems = []
    for error in _validator(crd_path).iter_errors(spec):
        field = ".".join(["spec", *(str(part) for part in error.absolute_path)])
        problems.append(SpecProblem(field, error.message))
    return sorted(problems, key=lambda problem: (problem.field, problem.message))


def validate_spec(spec: object, *, crd_path: Path) -> dict:
    """Validate `spec` against the CRD schema and return its normalised form.

    Raises InvalidSpec listing every problem found, each naming its field.
    """
    outcome = json.loads(_checked_spec(json.dumps(spec, sort_keys=True), crd_path))
    if outcome["problems"]:
        raise InvalidSpec([SpecProblem(**problem) for problem in outcome["problems"]])
    return outcome["spec"]


@functools.lru_cache(maxsize=256)
def _checked_spec(spec_json: str, crd_path: Path) -> str:
    # Cached by canonical spec JSON: Metacontroller resyncs an unchanged spec
    # many times, and the result depends on nothing else.
    spec = json.loads(spec_json)
    problems = schema_problems(spec, crd_path=crd_path)
    normalised = None
    if not problems:
        normalised, problems = normalise_spec(spec, schema=load_spec_schema(crd_path))
    return json.dumps({"spec": normalised, "problems": [vars(problem) for problem in problems]})


def normalise_spec(spec: dict, *, schema: dict) -> tuple[dict, list[SpecProblem]]:
    """Coerce numbers, apply defaults and check cross-field rules."""
    problems: list[SpecProblem] = []
    target = dict(spec["target"])
    router = dict(spec.get("router") or {})
    consumer = dict(spec.get("consumer") or {})
    scheduler = dict(spec.get("scheduler") or {})
    broker = dict(spec.get("broker") or {})

    # Whole numbers outside the scheduler, with their defaults.
    for section_name, section in (("target", target), ("router", router), ("consumer", consumer)):
        for key, default in DEFAULTS.items():
            prefix, _, field = key.partition(".")
            if prefix == section_name:
                section[field] = _whole(section.get(field, default), f"spec.{key}", problems)
        section["replicas"] = _replica_bounds(section_name, section.get("replicas") or {}, problems)
    router.setdefault("allowForcedFlavour", False)

    # Scheduler numbers keep only the fields the user set: the engine owns their defaults.
    scheduler_schema = schema["properties"]["scheduler"]["properties"]
    for field in DECIMAL_FIELDS:
        if field in scheduler:
            scheduler[field] = _decimal(scheduler[field], f"spec.scheduler.{field}",
                                        node=scheduler_schema[field], problems=problems)
    for field in WHOLE_FIELDS:
        if field in scheduler:
            scheduler[field] = _whole(scheduler[field], f"spec.scheduler.{field}", problems)
    _check_order(scheduler, low="creditMin", high="creditMax", problems=problems)
    _check_order(scheduler, low="throttleIntensityFloor", high="throttleIntensityCeiling",
                 problems=problems, strict=True)

    for section in (router, consumer):
        section["resources"] = section.get("resources") or copy.deepcopy(DEFAULT_RESOURCES)
    normalised = {"target": target, "router": router, "consumer": consumer,
                  "scheduler": scheduler, "broker": broker}
    return normalised, problems


def _replica_bounds(section: str, raw: dict, problems: list[SpecProblem]) -> dict:
    defaults = DEFAULT_REPLICAS[section]
    low = _whole(raw.get("min", defaults["min"]), f"spec.{section}.replicas.min", problems)
    high = _whole(raw.get("max", defaults["max"]), f"spec.{section}.replicas.max", problems)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        problems.append(SpecProblem(f"spec.{section}.replicas.min",
                                    f"min {low} is above max {high}; lower min or raise max"))
    return {"min": low, "max": high}


def _whole(value: object, field: str, problems: list[SpecProblem]) -> object:
    if isinstance(value, bool):
        problems.append(SpecProblem(field, f"{value!r} is not a whole number"))
        return value
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        problems.append(SpecProblem(field, f"{value!r} is not a whole number"))
        return value


def _decimal(value: object, field: str, *, node: dict, problems: list[SpecProblem]) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        problems.append(SpecProblem(field, f"{value!r} is not a number or a numeric string"))
        return value
    try:
        number = float(value)
    except ValueError:
        problems.append(SpecProblem(field, f"{value!r} is not a number"))
        return value
    # The schema's minimum/maximum only apply to the number form, so a string
    # such as "7" for a 0-1 field is range-checked here.
    if "minimum" in node and number < node["minimum"]:
        problems.append(SpecProblem(field, f"{value!r} is below the minimum {node['minimum']}"))
    if "maximum" in node and number > node["maximum"]:
        problems.append(SpecProblem(field, f"{value!r} is above the maximum {node['maximum']}"))
    return number


def _check_order(scheduler: dict, *, low: str, high: str, problems: list[SpecProblem],
                 strict: bool = False) -> None:
    first, second = scheduler.get(low), scheduler.get(high)
    if not isinstance(first, (int, float)) or not isinstance(second, (int, float)):
        return
    if first > second or (strict and first == second):
        relation = "below" if strict else "at or below"
        problems.append(SpecProblem(f"spec.scheduler.{low}",
                                    f"{first} must be {relation} {high} ({second})"))
