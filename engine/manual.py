"""Validation of manual decisions: an operator's weights that override the policy for a while.

A manual decision names integer weights per flavour, summing to exactly 100
over the session's known flavours, a TTL (seconds or a duration string, at
most the engine's `manual_ttl_max`) and optionally a throttle in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from engine.model import Flavour
from engine.validation import (
    FieldError,
    ValidationError,
    check_range,
    parse_duration,
    parse_integer,
    parse_number,
    require_object,
)


@dataclass(frozen=True)
class ManualDecision:
    """A validated manual override: integer weights per flavour name, a TTL, an optional throttle."""

    weights: dict[str, int]
    ttl: timedelta
    throttle: float | None = None


def validate_manual(body, *, flavours: tuple[Flavour, ...], ttl_max: timedelta) -> ManualDecision:
    """Validate a manual decision against the session's flavours or raise ValidationError.

    Weights must be whole numbers summing to exactly 100 over known flavours;
    disabled flavours may only receive 0. Flavours left out get 0.
    """
    errors: list[FieldError] = []
    if not isinstance(body, dict):
        raise ValidationError([FieldError("body", "must be a JSON object")])
    known = {flavour.name: flavour for flavour in flavours}
    weights: dict[str, int] = {}
    if "flavourWeights" not in body:
        errors.append(FieldError("flavourWeights",
                                 "missing; give whole-number weights per flavour summing to 100"))
        raw_weights = None
    else:
        raw_weights = require_object(body["flavourWeights"], field_name="flavourWeights", errors=errors)
    for name, value in (raw_weights or {}).items():
        path = f"flavourWeights.{name}"
        if name not in known:
            errors.append(FieldError(path, f"unknown flavour; known flavours are {', '.join(known)}"))
            continue
        weight = parse_integer(value, field_name=path, errors=errors)
        check_range(weight, field_name=path, low=0, high=100, errors=errors)
        if weight and not known[name].enabled:
            errors.append(FieldError(path, "flavour is disabled and may only get 0"))
        if weight is not None:
            weights[name] = weight
    if raw_weights is not None and not errors and sum(weights.values()) != 100:
        errors.append(FieldError("flavourWeights", f"must sum to 100, got {sum(weights.values())}"))

    ttl = None
    if "ttlSeconds" not in body:
        errors.append(FieldError("ttlSeconds", "missing; give the override's lifetime in seconds"))
    else:
        ttl = parse_duration(body["ttlSeconds"], field_name="ttlSeconds", errors=errors,
                             at_most=ttl_max.total_seconds())
    throttle = None
    if body.get("throttle") is not None:
        throttle = parse_number(body["throttle"], field_name="throttle", errors=errors)
        check_range(throttle, field_name="throttle", low=0, high=1, errors=errors)
    for key in sorted(set(body) - {"flavourWeights", "ttlSeconds", "throttle"}):
        errors.append(FieldError(key, "unknown field; valid fields are flavourWeights, ttlSeconds, throttle"))
    if errors:
        raise ValidationError(errors)
    full = {flavour.name: weights.get(flavour.name, 0) for flavour in flavours}
    return ManualDecision(weights=full, ttl=ttl, throttle=throttle)
