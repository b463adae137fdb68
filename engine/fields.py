"""Field parsers shared by the engine's input validation: numbers, durations, objects, booleans.

Each parser reads one JSON value, appends a `FieldError(field, message)` to the
caller's list when the value is invalid and returns None, so a caller can check
every field before it returns one 400 that names all of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# Maximum duration, in seconds, for a field without a bound of its own: one year.
MAX_DURATION_SECONDS = 366 * 86400.0


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
    amount = f"{seconds:.0f}" if seconds == int(seconds) else f"{seconds:g}"
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds >= size and seconds % size == 0:
            return f"{amount} seconds ({seconds / size:g}{unit})"
    return f"{amount} seconds"


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
