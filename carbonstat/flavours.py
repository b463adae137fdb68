"""The three carbonstat flavours and the arithmetic each one performs.

A flavour averages every `stride`-th number of its input, starting with the
first: `high` reads every number, `mid` every second one, `low` every fourth.
Precision is on the 0-100 scale of the HTTP API. The functions here do no I/O,
so tests and the end-to-end checks recompute results with the same rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Flavour:
    """One carbonstat variant: its name, precision (0-100) and sampling stride."""

    name: str
    precision: int
    stride: int


FLAVOURS: dict[str, Flavour] = {
    "high": Flavour(name="high", precision=100, stride=1),
    "mid": Flavour(name="mid", precision=50, stride=2),
    "low": Flavour(name="low", precision=25, stride=4),
}


JSON_TYPE_NAMES = {str: "string", dict: "object", int: "number", float: "number", bool: "boolean"}


class InvalidNumbers(ValueError):
    """The request's `numbers` field cannot be averaged; the message gives the reason."""


def flavour_named(name: str) -> Flavour:
    """Return the flavour called `name`, or raise ValueError listing the valid names."""
    try:
        return FLAVOURS[name]
    except KeyError:
        valid = ", ".join(FLAVOURS)
        raise ValueError(f"unknown carbonstat flavour {name!r}; set one of: {valid}") from None


def validate_numbers(numbers: object) -> list[float]:
    """Check that `numbers` is a non-empty list of finite numbers and return them as floats.

    Booleans are rejected although Python counts them as integers, because
    JSON `true` is not a number to the client that sent it.
    """
    if numbers is None:
        raise InvalidNumbers('missing field "numbers": send {"numbers": [1, 2, 3]}')
    if not isinstance(numbers, list):
        kind = JSON_TYPE_NAMES.get(type(numbers), type(numbers).__name__)
        raise InvalidNumbers(f'"numbers" must be a JSON array of numbers, got {kind}')
    if not numbers:
        raise InvalidNumbers('"numbers" is empty: send at least one number')

    values = []
    for index, value in enumerate(numbers):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidNumbers(f'"numbers"[{index}] is not a number: {value!r:.40}')
        try:
            number = float(value)
        except OverflowError:
            raise InvalidNumbers(f'"numbers"[{index}] is too large for a double-precision float') from None
        if not math.isfinite(number):
            raise InvalidNumbers(f'"numbers"[{index}] is not finite: {value!r}')
        values.append(number)
    return values


def sample(numbers: list[float], flavour: Flavour) -> list[float]:
    """Return the numbers this flavour reads: every `stride`-th one, from the first."""
    return numbers[:: flavour.stride]


def average(numbers: list[float], flavour: Flavour) -> float:
    """Average the flavour's sample of `numbers` (which must be non-empty and finite)."""
    chosen = sample(numbers, flavour)
    try:
        return math.fsum(chosen) / len(chosen)
    except OverflowError:
        # The sum of values near the float maximum overflows although their mean does not.
        return math.fsum(value / len(chosen) for value in chosen)
