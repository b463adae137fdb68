"""The `p100` policy: all traffic to the most precise enabled flavour, the carbon-blind baseline."""

from __future__ import annotations

from engine.model import PolicyContext
from engine.policies import register
from engine.policies.allocation import ordered_enabled
from engine.policies.base import Policy, PolicyResult


@register
class P100Policy(Policy):
    name = "p100"

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        enabled = ordered_enabled(ctx.flavours)
        shares = {flavour.name: 0.0 for flavour in enabled}
        shares[enabled[0].name] = 1.0
        return PolicyResult(shares=shares, diagnostics={"allowance": 0.0})
