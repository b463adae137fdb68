"""Validation of the JSON the engine receives: schedule configuration and manual decisions.

Input arrives from the sync hook (the TrafficSchedule spec, where numbers may be
strings such as "0.15") and from operators. Every check collects its problems as
`FieldError(field, message)` instead of stopping at the first one, so a 400
response names each bad field at once. The result is a frozen `ScheduleConfig`
with engine units: precision as a 0.0-1.0 fraction, durations as timedelta.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta

from engine.model import Flavour
from engine.policies import POLICIES
from engine.policies.base import ENGINE_SET_OPTIONS, PolicyOption

COMPONENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
EVALUATORS = ("router", "consumer")
# Maximum duration, in seconds, for a field without a bound of its own: one year.
MAX_DURATION_SECONDS = 366 * 86400.0
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


class ValidationError(ValueError):
    """Raised with every problem found in one input document."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{error.field}: {error.message}" for error in errors))


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def to_json(self) -> dict:
        return {"field": self.field, "message": self.message}


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


def parse_number(value, *, field_name: str, errors: list[FieldError]) -> float | None:
    """Read a finite number given as a JSON number or a numeric string; booleans are rejected."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors.append(FieldError(field_name, f"must be a number or a numeric string, got {value!r}"))
        return None
    try:
        number = float(value)
    except ValueError:
        errors.append(FieldError(field_name, f"must be a number or a numeric string, got {value!r}"))
        return None
    if not math.isfinite(number):
        errors.append(FieldError(field_name, f"must be finite, got {value!r}"))
        return None
    return number


def parse_integer(value, *, field_name: str, errors: list[FieldError]) -> int | None:
    """Read a whole number (10, 10.0 or "10"); fractions are rejected rather than rounded."""
    number = parse_number(value, field_name=field_name, errors=errors)
    if number is None:
        return None
    if number != int(number):
        errors.append(FieldError(field_name, f"must be a whole number, got {value!r}"))
        return None
    return int(number)


def parse_duration(value, *, field_name: str, errors: list[FieldError],
                   allow_zero: bool = False, at_most: float = MAX_DURATION_SECONDS) -> timedelta | None:
    """Read seconds as a number, a numeric string, or a string with a unit: "300", "5m", "24h".

    `at_most` is the maximum accepted, in seconds. It is checked before the timedelta
    is built, so a value such as 1e308 becomes a field error instead of an OverflowError.
    """
    if isinstance(value, str):
        match = DURATION_TEXT.match(value)
        if not match:
            errors.append(FieldError(
                field_name, f"must be seconds or a duration such as '30s', '5m', '24h', got {value!r}"))
            return None
        seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)]
    else:
        seconds = parse_number(value, field_name=field_name, errors=errors)
        if seconds is None:
            return None
    if seconds < 0 or (seconds == 0 and not allow_zero):
        expected = "zero or positive" if allow_zero else "positive"
        errors.append(FieldError(field_name, f"must be {expected}, got {value!r}"))
        return None
    if seconds > at_most:
        errors.append(FieldError(field_name, f"must be at most {seconds_text(at_most)}, got {value!r}"))
        return None
    return timedelta(seconds=seconds)


def seconds_text(seconds: float) -> str:
    """Say a bound in seconds and, when it is a whole number of days or hours, in those too."""
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds:g} seconds ({seconds / size:g}{unit})"
    return f"{seconds:g} seconds"


def check_range(value, *, field_name: str, low=None, high=None, errors: list[FieldError],
                low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Append an error when `value` lies outside the stated bounds."""
    if value is None:
        return
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        errors.append(FieldError(field_name, f"must be in {left}{low}, {high}{right}, got {value}"))


def require_object(value, *, field_name: str, errors: list[FieldError]) -> dict | None:
    if not isinstance(value, dict):
        errors.append(FieldError(field_name, f"must be a JSON object, got {type(value).__name__}"))
        return None
    return value


def require_bool(value, *, field_name: str, errors: list[FieldError]) -> bool | None:
    """Read a boolean; "true"/"false" strings are accepted because specs may quote them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    errors.append(FieldError(field_name, f"must be true or false, got {value!r}"))
    return None


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
            errors.append(FieldError(path, f"min and max must be at most {MAX_REPLICAS} replicas, "
                                           f"got min={low} max={high}"))
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
