"""The `credit-greedy` policy: spend quality credit where the grid is dirty.

allowance = budgetAllowance * creditFactor * intensityFactor, capped at
`maxAllowance` (0.9 by default, so the most precise flavour always keeps some
traffic), where

- budgetAllowance is the allowance whose mix meets `targetError` exactly;
- creditFactor is 1 at a zero balance, grows to 2 at creditMax and shrinks to
  0 at creditMin;
- intensityFactor is 0.5 at or below `throttleIntensityFloor`, 1.5 at or above
  `throttleIntensityCeiling`, linear in between.

Without carbon data intensityFactor is 1: the schedule then serves the static
mix that meets the target, corrected by the credit balance, which is the best
carbon-blind choice because every slot looks alike.
"""

from __future__ import annotations

from engine.model import PolicyContext
from engine.policies import register
from engine.policies.allocation import (
    MAX_ALLOWANCE_OPTION,
    budget_allowance,
    credit_factor,
    intensity_position,
    max_allowance,
    ordered_enabled,
    shares_for_allowance,
)
from engine.policies.base import Policy, PolicyResult


def credit_greedy_allowance(ctx: PolicyContext) -> tuple[float, dict]:
    """Return the uncapped credit-greedy allowance and the figures behind it."""
    enabled = ordered_enabled(ctx.flavours)
    budget = budget_allowance(enabled, target_error=ctx.ledger.target_error)
    credits = credit_factor(ctx.ledger)
    carbon_blind = not ctx.carbon.available or ctx.carbon.current is None
    if carbon_blind:
        intensity = 1.0
    else:
        position = intensity_position(ctx.carbon.current, floor=ctx.intensity_floor,
                                      ceiling=ctx.intensity_ceiling)
        intensity = 0.5 + position
    diagnostics = {
        "budgetAllowance": round(budget, 4),
        "creditFactor": round(credits, 4),
        "intensityFactor": round(intensity, 4),
        "carbonBlind": carbon_blind,
    }
    return budget * credits * intensity, diagnostics


def capped_result(ctx: PolicyContext, *, allowance: float, diagnostics: dict) -> PolicyResult:
    """Cap the allowance, turn it into shares and record the final allowance."""
    enabled = ordered_enabled(ctx.flavours)
    capped = min(max(0.0, allowance), max_allowance(ctx))
    diagnostics["allowance"] = round(capped, 4)
    return PolicyResult(shares=shares_for_allowance(enabled, allowance=capped), diagnostics=diagnostics)


@register
class CreditGreedyPolicy(Policy):
    name = "credit-greedy"
    accepted_options = {"maxAllowance": MAX_ALLOWANCE_OPTION}

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        allowance, diagnostics = credit_greedy_allowance(ctx)
        return capped_result(ctx, allowance=allowance, diagnostics=diagnostics)
