"""Validation of the JSON the engine receives: schedule configuration and manual decisions.

Input arrives from the sync hook (the TrafficSchedule spec, where numbers may be
strings such as "0.15") and from operators. Every check collects its problems as
`FieldError(field, message)` instead of stopping at the first one, so a 400
response names each bad field at once. The result is a frozen `ScheduleConfig`
with engine units: precision as a 0.0-1.0 fraction, durations as timedelta.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import timedelta

from engine.fields import (
    FieldError,
    ValidationError,
    check_range,
    parse_duration,
    parse_integer,
    parse_number,
    require_bool,
    require_object,
)
from engine.model import Flavour
from engine.policies import POLICIES
from engine.policies.base import ENGINE_SET_OPTIONS, PolicyOption

COMPONENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
EVALUATORS = ("router", "consumer")
# Maximum per scheduler duration attribute, in seconds. A decision that lives a day or a
# quality window of a month is already longer than a schedule needs. A provider call or a
# cached provider response older than these bounds would only hide an outage.
DURATION_LIMITS = {
    "credit_window": 30 * 86400.0,
    "valid_for": 86400.0,
    "discovery_interval": 86400.0,
    "carbon_timeout": 60.0,
    "carbon_cache_ttl": 86400.0,
}
MAX_FLAVOURS = 32
# Maximum replicas of one component; a larger bound is a typo, not a deployment.
MAX_REPLICAS = 10000


@dataclass(frozen=True)
class SchedulerSpec:
    """The `scheduler` section of a TrafficSchedule, with defaults for absent fields."""

    policy: str = "credit-greedy"
    target_error: float = 0.1
    credit_min: float = -0.5
    credit_max: float = 0.5
    credit_window: timedelta = timedelta(hours=24)
    valid_for: timedelta = timedelta(seconds=60)
    discovery_interval: timedelta = timedelta(seconds=60)
    carbon_target: str = ""
    carbon_timeout: timedelta = timedelta(seconds=5)
    carbon_cache_ttl: timedelta = timedelta(minutes=5)
    throttle_min: float = 0.2
    throttle_intensity_floor: float = 100.0
    throttle_intensity_ceiling: float = 250.0
    evaluator: str = "router"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentBounds:
    """Replica bounds of one component (router, consumer, target or a flavour)."""

    min: int
    max: int


@dataclass(frozen=True)
class ScheduleConfig:
    """A validated `PUT /config` body."""

    scheduler: SchedulerSpec
    flavours: tuple[Flavour, ...]
    bounds: dict[str, ComponentBounds]
    state: dict | None = None

    @property
    def enabled_flavours(self) -> tuple[Flavour, ...]:
        """Enabled flavours, most precise first (cheapest first among equals)."""
        enabled = [flavour for flavour in self.flavours if flavour.enabled]
        return tuple(sorted(enabled, key=lambda flavour: (-flavour.precision, flavour.energy)))


DEFAULT_BOUNDS = {name: ComponentBounds(min=1, max=1) for name in ("router", "consumer", "target")}


# Scheduler fields: JSON name -> (attribute, kind). Kind selects the parser.
SCHEDULER_FIELDS = {
    "policy": ("policy", "text"),
    "targetError": ("target_error", "number"),
    "creditMin": ("credit_min", "number"),
    "creditMax": ("credit_max", "number"),
    "creditWindow": ("credit_window", "duration"),
    "validFor": ("valid_for", "duration"),
    "discoveryInterval": ("discovery_interval", "duration"),
    "carbonTarget": ("carbon_target", "text"),
    "carbonTimeout": ("carbon_timeout", "duration"),
    "carbonCacheTTL": ("carbon_cache_ttl", "duration-or-zero"),
    "throttleMin": ("throttle_min", "number"),
    "throttleIntensityFloor": ("throttle_intensity_floor", "number"),
    "throttleIntensityCeiling": ("throttle_intensity_ceiling", "number"),
    "evaluator": ("evaluator", "text"),
    "options": ("options", "object"),
}


def validate_scheduler(raw, *, policies: list[str], errors: list[FieldError]) -> SchedulerSpec | None:
    """Parse the `scheduler` section; unknown fields are errors so typos are not ignored."""
    section = require_object(raw, field_name="scheduler", errors=errors) if raw is not None else {}
    if section is None:
        return None
    values: dict = {}
    for key, value in section.items():
        path = f"scheduler.{key}"
        if key not in SCHEDULER_FIELDS:
            errors.append(FieldError(path, f"unknown field; valid fields are {', '.join(SCHEDULER_FIELDS)}"))
            continue
        attribute, kind = SCHEDULER_FIELDS[key]
        if value is None:
            continue
        if kind == "number":
            values[attribute] = parse_number(value, field_name=path, errors=errors)
        elif kind.startswith("duration"):
            values[attribute] = parse_duration(value, field_name=path, errors=errors,
                                               allow_zero=kind == "duration-or-zero",
                                               at_most=DURATION_LIMITS[attribute])
        elif kind == "object":
            values[attribute] = require_object(value, field_name=path, errors=errors)
        elif isinstance(value, str):
            values[attribute] = value.strip()
        else:
            errors.append(FieldError(path, f"must be a string, got {value!r}"))
            values[attribute] = None
    failed = {attribute for attribute, value in values.items() if value is None}
    spec = SchedulerSpec(**{attribute: value for attribute, value in values.items() if value is not None})
    check_scheduler_ranges(spec, policies=policies, failed=failed, errors=errors)
    if spec.policy in policies and "policy" not in failed:
        options = validate_options(spec.options, policy=spec.policy, errors=errors)
        if options is None:
            failed.add("options")
        else:
            spec = replace(spec, options=options)
    return None if failed else spec


def validate_options(raw: dict, *, policy: str, errors: list[FieldError]) -> dict | None:
    """Check `scheduler.options` against the options `policy` declares; return them as numbers.

    Keys the policy does not read and keys the engine sets itself are errors.
    A null value means "use the default" and is dropped.
    """
    accepted = accepted_options(policy)
    count = len(errors)
    options: dict = {}
    for key, value in raw.items():
        path = f"scheduler.options.{key}"
        if key in ENGINE_SET_OPTIONS:
            errors.append(FieldError(path, f"set by the engine ({ENGINE_SET_OPTIONS[key]}); remove it"))
        elif key not in accepted:
            valid = (f"valid options are {', '.join(accepted)}" if accepted
                     else "it takes no options")
            errors.append(FieldError(path, f"unknown option for policy {policy}; {valid}"))
        elif value is not None:
            options[key] = parse_option(value, option=accepted[key], field_name=path, errors=errors)
    return options if len(errors) == count else None


def accepted_options(policy: str) -> dict[str, PolicyOption]:
    """Return the options a registered policy reads; an unregistered name reads none."""
    policy_class = POLICIES.get(policy)
    return dict(policy_class.accepted_options) if policy_class is not None else {}


def parse_option(value, *, option: PolicyOption, field_name: str, errors: list[FieldError]):
    """Read one option value as its declared kind and check it lies in the option's range."""
    if option.kind == "integer":
        number = parse_integer(value, field_name=field_name, errors=errors)
    else:
        number = parse_number(value, field_name=field_name, errors=errors)
    check_range(number, field_name=field_name, low=option.low, high=option.high, errors=errors)
    return number


def check_scheduler_ranges(spec: SchedulerSpec, *, policies: list[str], failed: set[str],
                           errors: list[FieldError]) -> None:
    """Check ranges and relations between scheduler fields, skipping fields that failed to parse."""
    if {"credit_min", "credit_max", "throttle_intensity_floor", "throttle_intensity_ceiling"} & failed:
        # A relation with an unparsed value would compare against a default and mislead.
        spec = replace(spec, credit_min=-1.0, credit_max=1.0, throttle_intensity_floor=0.0,
                       throttle_intensity_ceiling=1.0)
    if spec.policy not in policies:
        errors.append(FieldError(
            "scheduler.policy", f"unknown policy {spec.policy!r}; valid policies are {', '.join(policies)}"))
    if spec.evaluator not in EVALUATORS:
        errors.append(FieldError(
            "scheduler.evaluator", f"must be one of {', '.join(EVALUATORS)}, got {spec.evaluator!r}"))
    check_range(spec.target_error, field_name="scheduler.targetError", low=0, high=1,
                high_inclusive=False, errors=errors)
    check_range(spec.throttle_min, field_name="scheduler.throttleMin", low=0, high=1, errors=errors)
    if spec.credit_min >= spec.credit_max:
        errors.append(FieldError(
            "scheduler.creditMin",
            f"must be below creditMax ({spec.credit_min} >= {spec.credit_max})"))
    check_range(spec.throttle_intensity_floor, field_name="scheduler.throttleIntensityFloor",
                low=0, errors=errors)
    if spec.throttle_intensity_floor >= spec.throttle_intensity_ceiling:
        errors.append(FieldError(
            "scheduler.throttleIntensityFloor",
            f"must be below throttleIntensityCeiling "
            f"({spec.throttle_intensity_floor} >= {spec.throttle_intensity_ceiling})"))
    if spec.credit_window < timedelta(minutes=1):
        errors.append(FieldError("scheduler.creditWindow", "must be at least 60 seconds"))
    if spec.valid_for < timedelta(seconds=1):
        errors.append(FieldError("scheduler.validFor", "must be at least 1 second"))


def validate_flavours(raw, *, errors: list[FieldError]) -> tuple[Flavour, ...] | None:
    """Parse `flavours`: precision 0-100 (stored as 0.0-1.0), energy > 0, unique names."""
    if not isinstance(raw, list) or not raw:
        errors.append(FieldError("flavours", "must be a non-empty list of flavour objects"))
        return None
    if len(raw) > MAX_FLAVOURS:
        errors.append(FieldError("flavours", f"at most {MAX_FLAVOURS} flavours, got {len(raw)}"))
        return None
    flavours: list[Flavour] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        flavour = validate_flavour(item, path=f"flavours[{index}]", errors=errors)
        if flavour is None:
            continue
        if flavour.name in seen:
            errors.append(FieldError(f"flavours[{index}].name", f"duplicate flavour name {flavour.name!r}"))
            continue
        seen.add(flavour.name)
        flavours.append(flavour)
    if len(flavours) != len(raw):
        return None
    if not any(flavour.enabled for flavour in flavours):
        errors.append(FieldError("flavours", "at least one flavour must be enabled"))
        return None
    return tuple(flavours)


def validate_flavour(item, *, path: str, errors: list[FieldError]) -> Flavour | None:
    """Parse one flavour; energy defaults to precision/100 (at least 0.01) when absent."""
    body = require_object(item, field_name=path, errors=errors)
    if body is None:
        return None
    count = len(errors)
    name = body.get("name")
    if not isinstance(name, str) or not COMPONENT_NAME.match(name):
        errors.append(FieldError(f"{path}.name",
                                 f"must be a lowercase DNS label (a-z, 0-9, -), got {name!r}"))
    if "precision" not in body:
        errors.append(FieldError(f"{path}.precision", "missing; give a number from 0 to 100"))
        precision = None
    else:
        precision = parse_number(body["precision"], field_name=f"{path}.precision", errors=errors)
        check_range(precision, field_name=f"{path}.precision", low=0, high=100, errors=errors)
    energy = None
    if body.get("energy") is not None:
        energy = parse_number(body["energy"], field_name=f"{path}.energy", errors=errors)
        if energy is not None and energy <= 0:
            errors.append(FieldError(f"{path}.energy", f"must be greater than 0, got {energy}"))
    enabled = require_bool(body.get("enabled", True), field_name=f"{path}.enabled", errors=errors)
    if len(errors) > count:
        return None
    if energy is None:
        energy = max(precision / 100.0, 0.01)
    return Flavour(name=name, precision=precision / 100.0, energy=energy, enabled=enabled)


def validate_bounds(raw, *, errors: list[FieldError]) -> dict[str, ComponentBounds] | None:
    """Parse `componentBounds`: whole numbers with 0 <= min <= max <= MAX_REPLICAS per component."""
    if raw is None:
        return dict(DEFAULT_BOUNDS)
    section = require_object(raw, field_name="componentBounds", errors=errors)
    if section is None:
        return None
    bounds = dict(DEFAULT_BOUNDS)
    count = len(errors)
    for component, item in section.items():
        path = f"componentBounds.{component}"
        if not COMPONENT_NAME.match(str(component)):
            errors.append(FieldError(path, "component name must be a lowercase DNS label"))
            continue
        body = require_object(item, field_name=path, errors=errors)
        if body is None:
            continue
        low = parse_integer(body.get("min", 1), field_name=f"{path}.min", errors=errors)
        high = parse_integer(body.get("max", low if low is not None else 1),
                             field_name=f"{path}.max", errors=errors)
        if low is None or high is None:
            continue
        if low < 0 or high < 0:
            errors.append(FieldError(path, f"min and max must be non-negative, got min={low} max={high}"))
        elif high > MAX_REPLICAS:
            # :g keeps a bound such as 1e308 short in the message instead of 309 digits.
            errors.append(FieldError(path, f"min and max must be at most {MAX_REPLICAS} replicas, "
                                           f"got min={low:g} max={high:g}"))
        elif low > high:
            errors.append(FieldError(path, f"min must not exceed max, got min={low} max={high}"))
        else:
            bounds[component] = ComponentBounds(min=low, max=high)
    return bounds if len(errors) == count else None


def validate_config(body, *, policies: list[str]) -> ScheduleConfig:
    """Validate a whole `PUT /config` body or raise ValidationError listing every problem."""
    errors: list[FieldError] = []
    if not isinstance(body, dict):
        raise ValidationError([FieldError("body", "must be a JSON object")])
    unknown = set(body) - {"scheduler", "flavours", "componentBounds", "state"}
    for key in sorted(unknown):
        errors.append(FieldError(key, "unknown field; valid fields are scheduler, flavours, "
                                      "componentBounds, state"))
    scheduler = validate_scheduler(body.get("scheduler"), policies=policies, errors=errors)
    flavours = validate_flavours(body.get("flavours"), errors=errors)
    bounds = validate_bounds(body.get("componentBounds"), errors=errors)
    state = body.get("state")
    if state is not None and not isinstance(state, dict):
        errors.append(FieldError("state", "must be a JSON object or absent"))
    if errors:
        raise ValidationError(errors)
    return ScheduleConfig(scheduler=scheduler, flavours=flavours, bounds=bounds, state=state)


__all__ = [
    "ComponentBounds", "FieldError", "ScheduleConfig", "SchedulerSpec", "ValidationError",
    "check_range", "parse_duration", "parse_integer", "parse_number", "require_object", "validate_config",
]
