"""The `round-robin` policy: the whole share rotates through the enabled flavours, one per evaluation."""

from __future__ import annotations

from engine.model import PolicyContext
from engine.policies import register
from engine.policies.allocation import ordered_enabled
from engine.policies.base import Policy, PolicyResult


@register
class RoundRobinPolicy(Policy):
    name = "round-robin"

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        enabled = ordered_enabled(ctx.flavours)
        chosen = enabled[ctx.evaluation % len(enabled)]
        shares = {flavour.name: 0.0 for flavour in enabled}
        shares[chosen.name] = 1.0
        return PolicyResult(shares=shares, diagnostics={"chosen": chosen.name, "evaluation": ctx.evaluation})
