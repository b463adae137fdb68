"""The `forecast-aware-global` policy: the credit-greedy allowance under six combined pressures.

The budget allowance (the mix that meets `targetError` exactly) is multiplied
by these factors, each 1 when its input is neutral or missing:

- trend: the next slot against the current one, as in `forecast-aware`
  (rising lowers the allowance, a dead band ignores small changes);
- look-ahead: the current intensity over the mean of the next `lookAheadSlots`
  (6 by default), in [0.5, 1.5]: a slot dirtier than what follows gets more;
- credit pressure: pulls the balance to the middle of [creditMin, creditMax],
  1 + 0.5 * (balance - middle) / halfWidth, in [0.5, 1.5];
- demand trend: forecast demand of the coming slots against the current one.
  Rising demand lowers the allowance by up to 20 % so credit is kept for the
  larger load, and falling demand raises it by up to 20 %;
- emissions so far: when the window's emissions per request exceed what the
  target mix would have emitted, the allowance rises by up to 30 %, and it falls
  by up to 30 % when they are below it (needs `windowEmissions` in the
  options, which the session fills in);
- zones: at or below `throttleIntensityFloor` (green) the allowance is halved
  so quality is delivered while it is cheap; at or above
  `throttleIntensityCeiling` (red) it is multiplied by 1.5.

The product is capped like credit-greedy. Without carbon data only the credit
pressure applies, which keeps the static target mix corrected for the balance.
"""

from __future__ import annotations

from engine.model import PolicyContext
from engine.policies import register
from engine.policies.allocation import (
    MAX_ALLOWANCE_OPTION,
    budget_allowance,
    option_float,
    ordered_enabled,
)
from engine.policies.base import Policy, PolicyOption, PolicyResult
from engine.policies.credit_greedy import capped_result
from engine.policies.forecast_aware import (
    DEAD_BAND_OPTION,
    DEFAULT_DEAD_BAND,
    TREND_GAIN_OPTION,
    intensity_trend,
    trend_factor,
)

# Slots are half an hour long, so 96 slots look two days ahead.
LOOK_AHEAD_SLOTS_OPTION = PolicyOption(kind="integer", low=1, high=96, default=6)


def clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def look_ahead_factor(ctx: PolicyContext, *, slots: int) -> float:
    current = ctx.carbon.current
    ahead = [slot.intensity for slot in ctx.carbon.slots[1:1 + max(1, slots)]]
    if current is None or not ahead or sum(ahead) <= 0:
        return 1.0
    return clip(current / (sum(ahead) / len(ahead)), 0.5, 1.5)


def credit_pressure_factor(ctx: PolicyContext) -> float:
    ledger = ctx.ledger
    middle = (ledger.credit_min + ledger.credit_max) / 2
    half_width = (ledger.credit_max - ledger.credit_min) / 2
    if half_width <= 0:
        return 1.0
    return clip(1.0 + 0.5 * (ledger.balance - middle) / half_width, 0.5, 1.5)


def demand_trend_factor(ctx: PolicyContext, *, slots: int) -> float:
    demand = ctx.demand
    if len(demand) < 2 or demand[0] <= 0:
        return 1.0
    ahead = demand[1:1 + max(1, slots)]
    change = (sum(ahead) / len(ahead) - demand[0]) / demand[0]
    return clip(1.0 - 0.5 * change, 0.8, 1.2)


def emissions_factor(ctx: PolicyContext) -> float:
    """Compare emissions per baseline emission so far in the window with the target mix's ratio."""
    emissions = ctx.options.get("windowEmissions") or {}
    emitted = float(emissions.get("emitted", 0.0) or 0.0)
    baseline = float(emissions.get("baseline", 0.0) or 0.0)
    planned = float(emissions.get("planned", 0.0) or 0.0)
    if baseline <= 0 or planned <= 0:
        return 1.0
    return clip(1.0 + (emitted - planned) / baseline, 0.7, 1.3)


def zone_factor(ctx: PolicyContext) -> tuple[float, str]:
    current = ctx.carbon.current
    if current is None:
        return 1.0, "unknown"
    if current <= ctx.intensity_floor:
        return 0.5, "green"
    if current >= ctx.intensity_ceiling:
        return 1.5, "red"
    return 1.0, "neutral"


def carbon_factors(ctx: PolicyContext) -> dict[str, float]:
    """Return the carbon-dependent factors; all 1.0 without carbon data."""
    if not ctx.carbon.available or ctx.carbon.current is None:
        return {"trendFactor": 1.0, "lookAheadFactor": 1.0, "demandFactor": 1.0,
                "emissionsFactor": 1.0, "zoneFactor": 1.0}
    trend = intensity_trend(ctx.carbon, slots=1)
    zone, _ = zone_factor(ctx)
    return {
        "trendFactor": trend_factor(trend, dead_band=option_float(ctx, "deadBand", DEFAULT_DEAD_BAND),
                                    gain=option_float(ctx, "trendGain", 1.0)),
        "lookAheadFactor": look_ahead_factor(ctx, slots=int(option_float(ctx, "lookAheadSlots", 6))),
        "demandFactor": demand_trend_factor(ctx, slots=int(option_float(ctx, "lookAheadSlots", 6))),
        "emissionsFactor": emissions_factor(ctx),
        "zoneFactor": zone,
    }


@register
class ForecastAwareGlobalPolicy(Policy):
    name = "forecast-aware-global"
    accepted_options = {"maxAllowance": MAX_ALLOWANCE_OPTION, "deadBand": DEAD_BAND_OPTION,
                        "trendGain": TREND_GAIN_OPTION, "lookAheadSlots": LOOK_AHEAD_SLOTS_OPTION}

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        enabled = ordered_enabled(ctx.flavours)
        budget = budget_allowance(enabled, target_error=ctx.ledger.target_error)
        factors = carbon_factors(ctx)
        factors["creditFactor"] = credit_pressure_factor(ctx)

        multiplier = 1.0
        for value in factors.values():
            multiplier *= value
        diagnostics = {key: round(value, 4) for key, value in factors.items()}
        diagnostics["budgetAllowance"] = round(budget, 4)
        diagnostics["zone"] = zone_factor(ctx)[1] if ctx.carbon.available else "unknown"
        diagnostics["carbonBlind"] = not ctx.carbon.available or ctx.carbon.current is None
        return capped_result(ctx, allowance=budget * multiplier, diagnostics=diagnostics)
