"""Shared arithmetic of the credit-based policies: allowance and its split among flavours.

The *allowance* is the share of traffic moved away from the most precise
enabled flavour (the "top" flavour). It is split among the cheaper flavours in
proportion to the energy each saves per unit of error it adds,
`(e_top - e_f) / (p_top - p_f)`, which ranks downgrade options like the
fractional knapsack that bounds every policy. A flavour that is no cheaper
than the top one gets nothing.

The *budget allowance* is the allowance whose expected error equals
`targetError`: spending it in every slot meets the quality set-point exactly.
Carbon-aware policies scale it up in dirty slots and down in clean ones.
"""

from __future__ import annotations

import math

from engine.model import Flavour, LedgerView, PolicyContext
from engine.policies.base import PolicyOption

DEFAULT_MAX_ALLOWANCE = 0.9
# `maxAllowance` is clipped to [0, 0.99] when read, so validation accepts exactly that range.
MAX_ALLOWANCE_OPTION = PolicyOption(kind="number", low=0.0, high=0.99, default=DEFAULT_MAX_ALLOWANCE)


def ordered_enabled(flavours: tuple[Flavour, ...]) -> list[Flavour]:
    """Return enabled flavours, most precise first and cheapest first among equals."""
    enabled = [flavour for flavour in flavours if flavour.enabled]
    return sorted(enabled, key=lambda flavour: (-flavour.precision, flavour.energy))


def downgrade_split(enabled: list[Flavour]) -> dict[str, float]:
    """Return each cheaper flavour's fraction of the allowance (fractions sum to 1 or the dict is empty)."""
    if len(enabled) < 2:
        return {}
    top = enabled[0]
    scores: dict[str, float] = {}
    for flavour in enabled[1:]:
        error_added = top.precision - flavour.precision
        energy_saved = top.energy - flavour.energy
        if error_added > 0 and energy_saved > 0:
            scores[flavour.name] = energy_saved / error_added
    # A tiny error_added (such as a subnormal precision gap) overflows a score to inf,
    # and inf / inf would be NaN. Infinite scores dominate, so they share the split alone.
    infinite = [name for name, score in scores.items() if math.isinf(score)]
    if infinite:
        return {name: 1.0 / len(infinite) for name in infinite}
    total = sum(scores.values())
    return {name: score / total for name, score in scores.items()} if total > 0 else {}


def budget_allowance(enabled: list[Flavour], *, target_error: float) -> float:
    """Return the allowance whose mix has an expected error of exactly `target_error` (0..1)."""
    split = downgrade_split(enabled)
    if not split:
        return 0.0
    top = enabled[0]
    by_name = {flavour.name: flavour for flavour in enabled}
    mix_precision = sum(fraction * by_name[name].precision for name, fraction in split.items())
    spare_error = target_error - (1.0 - top.precision)
    if spare_error <= 0 or top.precision <= mix_precision:
        return 0.0
    return min(1.0, spare_error / (top.precision - mix_precision))


def shares_for_allowance(enabled: list[Flavour], *, allowance: float) -> dict[str, float]:
    """Turn an allowance into traffic shares over the enabled flavours."""
    split = downgrade_split(enabled)
    if not split:
        allowance = 0.0
    shares = {flavour.name: 0.0 for flavour in enabled}
    shares[enabled[0].name] = 1.0 - allowance
    for name, fraction in split.items():
        shares[name] = allowance * fraction
    return shares


def credit_factor(ledger: LedgerView) -> float:
    """Return 1 at zero balance, rising to 2 at creditMax and falling to 0 at creditMin."""
    if ledger.balance >= 0:
        return 1.0 + (ledger.balance / ledger.credit_max if ledger.credit_max > 0 else 0.0)
    return max(0.0, 1.0 - (ledger.balance / ledger.credit_min if ledger.credit_min < 0 else 1.0))


def intensity_position(intensity: float | None, *, floor: float, ceiling: float) -> float:
    """Return 0.0 at or below the floor, 1.0 at or above the ceiling, linear in between.

    Returns 0.5 when the intensity is unknown or the ceiling is not above the floor.
    """
    if intensity is None or ceiling <= floor:
        return 0.5
    return min(1.0, max(0.0, (intensity - floor) / (ceiling - floor)))


def max_allowance(ctx: PolicyContext) -> float:
    """Return the cap on the allowance: `maxAllowance` from the options, clamped to 0-0.99.

    A malformed `maxAllowance` keeps the default.
    """
    value = ctx.options.get("maxAllowance", DEFAULT_MAX_ALLOWANCE)
    try:
        return min(0.99, max(0.0, float(value)))
    except (TypeError, ValueError):
        return DEFAULT_MAX_ALLOWANCE


def option_float(ctx: PolicyContext, key: str, default: float) -> float:
    """Read a numeric policy option, keeping the default for a missing or malformed value."""
    try:
        return float(ctx.options.get(key, default))
    except (TypeError, ValueError):
        return default
