"""The `random` policy: independent random weights at every evaluation, a carbon-blind baseline.

The random generator is injectable so that tests can seed it; by default each
policy instance owns an unseeded `random.Random`.
"""

from __future__ import annotations

import random as random_module

from engine.model import PolicyContext
from engine.policies import register
from engine.policies.allocation import ordered_enabled
from engine.policies.base import Policy, PolicyResult


@register
class RandomPolicy(Policy):
    name = "random"

    def __init__(self, rng: random_module.Random | None = None) -> None:
        self.rng = rng or random_module.Random()

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        enabled = ordered_enabled(ctx.flavours)
        shares = {flavour.name: self.rng.random() for flavour in enabled}
        return PolicyResult(shares=shares, diagnostics={})
