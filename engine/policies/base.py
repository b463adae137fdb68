"""The policy interface: a pure function from flavours, forecast and ledger to weights.

A policy returns traffic shares as fractions. The engine turns them into
integer percentages with `integer_weights`, so every policy gets the same
rounding and the same guarantees (sum exactly 100, disabled flavours 0).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from engine.model import PolicyContext


@dataclass
class PolicyResult:
    """Traffic shares per flavour name (fractions, any non-negative scale) and why."""

    shares: dict[str, float]
    diagnostics: dict = field(default_factory=dict)


# Option keys the session fills in before every evaluation. A schedule may not set them,
# because the engine's value would replace the user's after the first measurement.
ENGINE_SET_OPTIONS = {
    "windowEmissions": "emissions so far in the quality window",
    "demandError": "the measured relative error of the demand forecast",
}


@dataclass(frozen=True)
class PolicyOption:
    """A tuning option a policy reads from `scheduler.options`: kind, inclusive range and default."""

    kind: str  # "number" or "integer"
    low: float
    high: float
    default: float


class Policy(ABC):
    """Base class of every scheduling policy.

    Subclasses keep no state between evaluations, except the random policy's generator.
    """

    name: ClassVar[str]
    # The `scheduler.options` keys this policy reads. Validation rejects any other key.
    accepted_options: ClassVar[dict[str, PolicyOption]] = {}

    @abstractmethod
    def decide(self, ctx: PolicyContext) -> PolicyResult:
        """Choose traffic shares for the slot that contains `ctx.now`."""


def integer_weights(shares: dict[str, float], enabled: list[str]) -> dict[str, int]:
    """Round shares to integer percentages summing to exactly 100 (largest remainder).

    Only names in `enabled` receive weight. If every share is zero or not
    finite, all weight goes to the first enabled name, which callers order
    most precise first.
    """
    if not enabled:
        raise ValueError("no enabled flavour to give weight to")
    clean = {
        name: max(0.0, float(shares.get(name, 0.0)))
        for name in enabled
        if math.isfinite(float(shares.get(name, 0.0)))
    }
    total = sum(clean.values())
    if total <= 0:
        return {name: (100 if index == 0 else 0) for index, name in enumerate(enabled)}

    exact = {name: clean.get(name, 0.0) * 100.0 / total for name in enabled}
    floors = {name: int(math.floor(value)) for name, value in exact.items()}
    remainder = 100 - sum(floors.values())
    # Ties go to the earlier (more precise) flavour so rounding never favours cheap ones.
    order = sorted(enabled, key=lambda name: (-(exact[name] - floors[name]), enabled.index(name)))
    for name in order[:remainder]:
        floors[name] += 1
    return floors
