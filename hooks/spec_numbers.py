"""Numbers in a TrafficSchedule spec: the forms accepted and the messages for the rest.

The CRD declares three kinds of number that may be written as strings, each
with a `pattern` for the string form:
- whole numbers (replica counts, queue lengths): digits only, `10` or `"10"`;
- decimals (`targetError`, ...): what the engine's `parse_number` reads, so
  `0.15`, `"0.15"`, `"1e-1"`, `" 0.15 "`, `"+.5"`;
- durations (`creditWindow`, ...): seconds or a number with a unit, as the
  engine's `parse_duration` reads them: `300`, `1.5`, `"300"`, `"5m"`, `"24h"`.
The API server checks only the pattern of a string and the range of a number.
The functions here parse both forms after the schema has passed, check the
range of the string form too, and return plain numbers for the engine.

Two forms the engine reads are left out on purpose, because Kubernetes users
do not write them and the CRD patterns would become hard to read: digit
separators (`"1_000"`) and digits outside ASCII.

Schema errors on these fields come from jsonschema as `'abc' does not match
'^...$'`; `describe_schema_error` turns them into sentences that name the
expected form.
"""

from __future__ import annotations

import json
import math
import re

from jsonschema.exceptions import ValidationError

WHOLE_PATTERN = r"^[0-9]+$"
DECIMAL_PATTERN = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
DURATION_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$"
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

WHOLE_HINT = "is not a whole number; write it like 10"
DECIMAL_HINT = "is not a number; write it like 0.15"
DURATION_HINT = "is not a duration; write seconds like 300 or a unit like 5m or 24h"
# The message for a string that fails each `pattern` of the CRD, written after the value.
PATTERN_HINTS = {
    WHOLE_PATTERN: WHOLE_HINT,
    DECIMAL_PATTERN: DECIMAL_HINT,
    DURATION_PATTERN: DURATION_HINT,
    r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$": "is not a resource quantity; write it like 100m or 128Mi",
    r"^[a-z]([-a-z0-9]*[a-z0-9])?$":
        "is not a Service name; use lowercase letters, digits and '-', starting with a letter",
    r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$": "is not a Secret name; use lowercase letters, digits, '-' and '.'",
    r"^[-._a-zA-Z0-9]+$": "is not a Secret key; use letters, digits, '-', '_' and '.'",
}


def shown(value: object) -> str:
    """Return `value` as it appears in the spec's JSON: strings in double quotes."""
    return json.dumps(value)


def describe_schema_error(error: ValidationError) -> str:
    """Return a sentence for one schema violation, naming the value and the expected form."""
    value = error.instance
    if error.validator == "pattern" and error.validator_value in PATTERN_HINTS:
        return f"{shown(value)} {PATTERN_HINTS[error.validator_value]}"
    if error.validator == "anyOf" and error.schema.get("x-kubernetes-int-or-string"):
        return f"{shown(value)} {WHOLE_HINT}"
    if error.validator == "minimum":
        return f"{shown(value)} is below the minimum {bound_text(error.validator_value)}"
    if error.validator == "maximum":
        return f"{shown(value)} is above the maximum {bound_text(error.validator_value)}"
    if error.validator == "exclusiveMaximum":
        return f"{shown(value)} must be below {bound_text(error.validator_value)}"
    if error.validator == "exclusiveMinimum":
        return f"{shown(value)} must be above {bound_text(error.validator_value)}"
    return error.message


def bound_text(bound: float, unit: str = "") -> str:
    """Return a bound as written in the CRD: 2592000, not 2.592e+06."""
    number = str(int(bound)) if float(bound).is_integer() else str(bound)
    return number + unit


def check_bounds(number: float, *, shown_value: str, node: dict, unit: str = "") -> str | None:
    """Return the problem with `number` against the node's bounds, or None.

    The node may state an exclusive bound as OpenAPI 3.0 does (`maximum` plus
    `exclusiveMaximum: true`) or as JSON Schema does (`exclusiveMaximum: 1`).
    """
    low, low_exclusive = _bound(node, "minimum", "exclusiveMinimum")
    high, high_exclusive = _bound(node, "maximum", "exclusiveMaximum")
    if low is not None and (number <= low if low_exclusive else number < low):
        relation = "must be above" if low_exclusive else "is below the minimum"
        return f"{shown_value} {relation} {bound_text(low, unit)}"
    if high is not None and (number >= high if high_exclusive else number > high):
        relation = "must be below" if high_exclusive else "is above the maximum"
        return f"{shown_value} {relation} {bound_text(high, unit)}"
    return None


def _bound(node: dict, inclusive_key: str, exclusive_key: str) -> tuple[float | None, bool]:
    exclusive = node.get(exclusive_key)
    if exclusive is True:
        return node.get(inclusive_key), True
    if not isinstance(exclusive, bool) and isinstance(exclusive, (int, float)):
        return exclusive, True
    return node.get(inclusive_key), False


def parse_whole(value: object, *, node: dict) -> tuple[int | None, str | None]:
    """Read a whole number given as an integer or a digit string; return (number, problem)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not re.match(WHOLE_PATTERN, value)):
        return None, f"{shown(value)} {WHOLE_HINT}"
    number = int(value)
    return number, check_bounds(number, shown_value=shown(value), node=node)


def parse_decimal(value: object, *, node: dict) -> tuple[float | None, str | None]:
    """Read a finite decimal given as a number or a numeric string; return (number, problem)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (
            isinstance(value, str) and not re.match(DECIMAL_PATTERN, value)):
        return None, f"{shown(value)} {DECIMAL_HINT}"
    number = float(value)
    if not math.isfinite(number):
        return None, f"{shown(value)} is not a finite number; write it like 0.15"
    return number, check_bounds(number, shown_value=shown(value), node=node)


def parse_duration(value: object, *, node: dict) -> tuple[int | float | None, str | None]:
    """Read a duration as seconds (a number or a string, with an optional unit); return (seconds, problem).

    Whole seconds come back as an int, so the engine receives `300`, not `300.0`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None, f"{shown(value)} {DURATION_HINT}"
    if isinstance(value, str):
        match = re.match(DURATION_PATTERN, value)
        if not match:
            return None, f"{shown(value)} {DURATION_HINT}"
        seconds = float(match.group(1)) * DURATION_UNITS[match.group(3)]
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        return None, f"{shown(value)} is not a finite number of seconds; write it like 300"
    problem = check_bounds(seconds, shown_value=shown(value), node=node, unit=" s")
    return (int(seconds) if seconds.is_integer() else seconds), problem
