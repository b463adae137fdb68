"""Processing throttle and replica ceilings.

The throttle (0..1) is the share of processing capacity a schedule may use in
the current slot. It is the smaller of two ratios:

- `creditsRatio`: the credit balance normalised to [0, 1] over
  [creditMin, creditMax]. A balance near creditMin lowers the throttle, and
  a balance at creditMax leaves this ratio at 1.0.
- `intensityRatio`: how far the worse of the current and next slot's intensity
  is below `throttleIntensityCeiling`, normalised between floor and ceiling
  (1.0 at or below the floor, 0.0 at or above the ceiling).

The throttle never drops below `throttleMin`, and is exactly 1.0 while the
worse intensity is at or below the floor: on a clean grid nothing is held back.
Without carbon data the throttle is 1.0, because slowing down blind would cost
latency without a known carbon gain.

Each component's ceiling is `max(min, floor(max * throttle))`, an integer never
below the component's minimum. The router is exempt (its ceiling is its max)
because it must keep accepting requests; queues absorb the backlog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.validation import ComponentBounds

EXEMPT_COMPONENTS = frozenset({"router"})


@dataclass(frozen=True)
class Throttle:
    throttle: float
    credits_ratio: float
    intensity_ratio: float

    def to_json(self) -> dict:
        return {
            "throttle": round(self.throttle, 4),
            "creditsRatio": round(self.credits_ratio, 4),
            "intensityRatio": round(self.intensity_ratio, 4),
        }


def credits_ratio(*, balance: float, credit_min: float, credit_max: float) -> float:
    """Return the balance's position in the credit band, 0.0 at creditMin and 1.0 at creditMax."""
    span = credit_max - credit_min
    if span <= 0:
        return 1.0
    return min(1.0, max(0.0, (balance - credit_min) / span))


def intensity_ratio(*, worse: float, floor: float, ceiling: float) -> float:
    """Return 1.0 at or below the floor, 0.0 at or above the ceiling, linear in between."""
    if worse <= floor:
        return 1.0
    if worse >= ceiling:
        return 0.0
    return (ceiling - worse) / (ceiling - floor)


def compute_throttle(
    *,
    balance: float,
    credit_min: float,
    credit_max: float,
    intensity_now: float | None,
    intensity_next: float | None,
    floor: float,
    ceiling: float,
    throttle_min: float,
) -> Throttle:
    """Combine the credit and intensity ratios into the processing throttle."""
    credit_part = credits_ratio(balance=balance, credit_min=credit_min, credit_max=credit_max)
    known = [value for value in (intensity_now, intensity_next) if value is not None and math.isfinite(value)]
    if not known:
        return Throttle(throttle=1.0, credits_ratio=credit_part, intensity_ratio=1.0)

    worse = max(known)
    intensity_part = intensity_ratio(worse=worse, floor=floor, ceiling=ceiling)
    if worse <= floor:
        return Throttle(throttle=1.0, credits_ratio=credit_part, intensity_ratio=intensity_part)
    throttle = max(throttle_min, min(credit_part, intensity_part))
    return Throttle(throttle=min(1.0, throttle), credits_ratio=credit_part, intensity_ratio=intensity_part)


def replica_ceilings(bounds: dict[str, ComponentBounds], *, throttle: float) -> dict[str, int]:
    """Return the integer replica ceiling of each component for the given throttle."""
    ceilings: dict[str, int] = {}
    for component, bound in bounds.items():
        if component in EXEMPT_COMPONENTS:
            ceilings[component] = bound.max
            continue
        # A small epsilon keeps 10 * 0.3 (2.9999999999999996) from flooring to 2.
        scaled = math.floor(bound.max * throttle + 1e-9)
        ceilings[component] = max(bound.min, min(bound.max, scaled))
    return ceilings
