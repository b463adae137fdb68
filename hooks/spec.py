"""Validation and normalisation of a TrafficSchedule spec.

The schema is read from the CRD file itself, so the API server and the hook
enforce the same rules. Two translations turn the CRD's structural schema
into plain JSON Schema:
- an object node that declares `properties` gets `additionalProperties:
  false`, because the API server silently prunes undeclared fields and a
  typo should be reported, not lost;
- OpenAPI 3.0's `exclusiveMinimum: true` or `exclusiveMaximum: true` next to
  its bound becomes the JSON Schema form, such as `exclusiveMaximum: 1`.
`x-kubernetes-*` keywords are left in place because JSON Schema ignores them.

After the schema passes, `normalise_spec` turns number-or-string fields into
numbers (`hooks.spec_numbers`), fills documented defaults and checks what a
schema cannot express (a minimum above its maximum, a numeric string out of
range).
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from hooks.spec_numbers import describe_schema_error, parse_decimal, parse_duration, parse_whole

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
DURATION_FIELDS = ("creditWindow", "validFor", "discoveryInterval", "carbonTimeout", "carbonCacheTTL")


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
    _translate_exclusive_bounds(schema)
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


def _translate_exclusive_bounds(node: object) -> None:
    if isinstance(node, dict):
        for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if node.get(exclusive) is True and inclusive in node:
                node[exclusive] = node.pop(inclusive)
            elif node.get(exclusive) is False:
                del node[exclusive]
        for child in node.values():
            _translate_exclusive_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _translate_exclusive_bounds(child)


@functools.lru_cache(maxsize=4)
def _validator(crd_path: Path) -> Draft202012Validator:
    return Draft202012Validator(load_spec_schema(crd_path))


def schema_problems(spec: object, *, crd_path: Path) -> list[SpecProblem]:
    """List every schema violation of `spec`, ordered by field path."""
    problems = []
    for error in _validator(crd_path).iter_errors(spec):
        field = ".".join(["spec", *(str(part) for part in error.absolute_path)])
        problems.append(SpecProblem(field, describe_schema_error(error)))
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
        nodes = schema["properties"][section_name]["properties"]
        for key, default in DEFAULTS.items():
            prefix, _, field = key.partition(".")
            if prefix == section_name:
                section[field] = _number(parse_whole, section.get(field, default), field=f"spec.{key}",
                                         node=nodes[field], problems=problems)
        section["replicas"] = _replica_bounds(section_name, section.get("replicas") or {},
                                              nodes=nodes["replicas"]["properties"], problems=problems)
    router.setdefault("allowForcedFlavour", False)

    # Scheduler numbers keep only the fields the user set: the engine owns their defaults.
    scheduler_nodes = schema["properties"]["scheduler"]["properties"]
    for fields, parse in ((DECIMAL_FIELDS, parse_decimal), (DURATION_FIELDS, parse_duration)):
        for field in fields:
            if field in scheduler:
                scheduler[field] = _number(parse, scheduler[field], field=f"spec.scheduler.{field}",
                                           node=scheduler_nodes[field], problems=problems)
    _check_order(scheduler, low="creditMin", high="creditMax", problems=problems, strict=True)
    _check_order(scheduler, low="throttleIntensityFloor", high="throttleIntensityCeiling",
                 problems=problems, strict=True)

    for section in (router, consumer):
        section["resources"] = section.get("resources") or copy.deepcopy(DEFAULT_RESOURCES)
    normalised = {"target": target, "router": router, "consumer": consumer,
                  "scheduler": scheduler, "broker": broker}
    return normalised, problems


def _replica_bounds(section: str, raw: dict, *, nodes: dict, problems: list[SpecProblem]) -> dict:
    defaults = DEFAULT_REPLICAS[section]
    low = _number(parse_whole, raw.get("min", defaults["min"]), field=f"spec.{section}.replicas.min",
                  node=nodes["min"], problems=problems)
    high = _number(parse_whole, raw.get("max", defaults["max"]), field=f"spec.{section}.replicas.max",
                   node=nodes["max"], problems=problems)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        problems.append(SpecProblem(f"spec.{section}.replicas.min",
                                    f"min {low} is above max {high}; lower min or raise max"))
    return {"min": low, "max": high}


def _number(parse, value: object, *, field: str, node: dict, problems: list[SpecProblem]) -> object:
    """Return `value` parsed by `parse`, or unchanged after recording its problem."""
    number, problem = parse(value, node=node)
    if problem is not None:
        problems.append(SpecProblem(field, problem))
    return value if number is None else number


def _check_order(scheduler: dict, *, low: str, high: str, problems: list[SpecProblem],
                 strict: bool = False) -> None:
    first, second = scheduler.get(low), scheduler.get(high)
    if not isinstance(first, (int, float)) or not isinstance(second, (int, float)):
        return
    if first > second or (strict and first == second):
        relation = "below" if strict else "at or below"
        problems.append(SpecProblem(f"spec.scheduler.{low}",
                                    f"{first} must be {relation} {high} ({second})"))
