"""The `forecast-aware` policy: credit-greedy, shifted by the forecast intensity trend.

trend = (mean intensity of the next `trendSlots` slots - current) / current.
When the trend is beyond the dead band (`deadBand`, 5 % by default), the
allowance is multiplied by `1 - trendGain * trend`, kept within [0.5, 1.5].
So a rising forecast moves weight to the most precise flavour now (quality is
spent while the grid is cleaner), a falling forecast moves weight away from it
(quality is saved for the cleaner slots ahead). Smaller trends change nothing.
Without carbon data it decides exactly as credit-greedy does.
"""

from __future__ import annotations

from engine.model import CarbonSnapshot, PolicyContext
from engine.policies import register
from engine.policies.allocation import MAX_ALLOWANCE_OPTION, option_float
from engine.policies.base import Policy, PolicyOption, PolicyResult
from engine.policies.credit_greedy import capped_result, credit_greedy_allowance

DEFAULT_DEAD_BAND = 0.05
# A relative trend beyond 100 % is rare, so a wider dead band would switch the trend factor off.
DEAD_BAND_OPTION = PolicyOption(kind="number", low=0.0, high=1.0, default=DEFAULT_DEAD_BAND)
# The factor is clipped to [0.5, 1.5], so a gain above 10 only makes it jump between the clips.
TREND_GAIN_OPTION = PolicyOption(kind="number", low=0.0, high=10.0, default=1.0)
# Slots are half an hour long, so 96 slots look two days ahead.
TREND_SLOTS_OPTION = PolicyOption(kind="integer", low=1, high=96, default=2)


def intensity_trend(carbon: CarbonSnapshot, *, slots: int) -> float | None:
    """Return the relative change from the current slot to the mean of the next `slots` slots."""
    current = carbon.current
    ahead = [slot.intensity for slot in carbon.slots[1:1 + max(1, slots)]]
    if not carbon.available or current is None or current <= 0 or not ahead:
        return None
    return (sum(ahead) / len(ahead) - current) / current


def trend_factor(trend: float | None, *, dead_band: float, gain: float) -> float:
    """Return the allowance multiplier for a trend; 1.0 inside the dead band or without a trend."""
    if trend is None or abs(trend) <= dead_band:
        return 1.0
    return min(1.5, max(0.5, 1.0 - gain * trend))


@register
class ForecastAwarePolicy(Policy):
    name = "forecast-aware"
    accepted_options = {"maxAllowance": MAX_ALLOWANCE_OPTION, "deadBand": DEAD_BAND_OPTION,
                        "trendGain": TREND_GAIN_OPTION, "trendSlots": TREND_SLOTS_OPTION}

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        allowance, diagnostics = credit_greedy_allowance(ctx)
        trend = intensity_trend(ctx.carbon, slots=int(option_float(ctx, "trendSlots", 2)))
        factor = trend_factor(trend, dead_band=option_float(ctx, "deadBand", DEFAULT_DEAD_BAND),
                              gain=option_float(ctx, "trendGain", 1.0))
        diagnostics["trend"] = None if trend is None else round(trend, 4)
        diagnostics["trendFactor"] = round(factor, 4)
        return capped_result(ctx, allowance=allowance * factor, diagnostics=diagnostics)
