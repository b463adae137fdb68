"""The `forecast-optimal` policy: plan the rest of the quality window, apply the current slot.

At every evaluation the policy builds the horizon from the slot containing
`now` to the end of the current quality window. Windows are fixed intervals
of `ctx.window` aligned to the Unix epoch, like the ledger's. The policy hands
the intensity forecast, the expected demand and the precision already
delivered in the window (from the ledger) to `engine.planner.plan_window`,
and returns the shares of the current slot only. The next evaluation plans again with the
new ledger figures and forecast (receding horizon), so a forecast error in one
slot is corrected by the slots after it.

Horizon rules, in the order they apply:

- Slots of the carbon snapshot are used as given. The current slot counts
  only for the part from `now` to its end, and the last one only up to the
  window end.
- Beyond the last forecast slot, up to the window end, slots get the mean
  forecast intensity, so the planner treats them as ordinary slots.
- Without carbon data every slot gets the same intensity, which makes the
  plan the carbon-blind static mix that meets the target with the budget
  left in the window.
- Demand comes from `ctx.demand`, slot by slot. Missing values take the mean
  of the known ones or, with no demand at all, the window's delivered rate.

Hedge. Intensity forecast errors can only cost carbon, because the quality
constraint does not depend on intensity. What can push a window below target
is demand arriving where the plan did not expect it and weight rounding. So
the plan uses a tighter target error,

    planned = targetError - remaining * (hedge + demandError * spread)

where `remaining` is the forecast share of the window's requests that are
still to come and `hedge` (option, default 0.001) covers rounding.
`demandError` (option, relative) covers demand forecast error. Its default is
0 when demand is given for the whole horizon and 0.1 when the policy had to
guess it.
`spread` is the largest gap between a hull flavour's error and the target,
because a plan puts whole slots on one flavour and a demand error in such a
slot moves the window's error by up to that much per request.
The current slot's downgrade is also rounded down to whole percent, so that
the integer weights the engine serves never deliver less precision than
planned.

Diagnostics carry the plan's view of the current slot (`planSlotRank`,
`planSlotIntensity`, `planCleanSlot`, `marginalPrice`,
`planIntensityThreshold`), so that the throttle and dashboards can follow
the plan. A slot the plan keeps fully precise is clean by the plan's measure,
and `planIntensityThreshold` is the intensity above which the plan starts to
downgrade, which the throttle can use as its lower intensity threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.model import SLOT, Flavour, PolicyContext
from engine.planner import WindowPlan, flavour_hull, plan_window
from engine.policies import register
from engine.policies.base import Policy, PolicyOption, PolicyResult

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_HEDGE = 0.001
DEFAULT_GUESSED_DEMAND_ERROR = 0.1


@dataclass(frozen=True)
class Horizon:
    """Slots from now to the end of the quality window, as the planner needs them."""

    intensities: tuple[float, ...]
    demand: tuple[float, ...]
    forecast_slots: int  # slots covered by the carbon snapshot
    demand_given: bool  # True when ctx.demand covered every slot
    carbon_blind: bool


def window_bounds(ctx: PolicyContext) -> tuple[datetime, datetime, float, float]:
    """Return the current window's start and end and what it has delivered (requests, precision sum).

    A ledger view from an earlier window counts as nothing delivered.
    """
    start = _EPOCH + ((ctx.now - _EPOCH) // ctx.window) * ctx.window
    end = start + ctx.window
    ledger = ctx.ledger
    if ledger.window_start is not None and ledger.window_start == start:
        return start, end, ledger.window_requests, ledger.window_precision_sum
    return start, end, 0.0, 0.0


def build_horizon(ctx: PolicyContext, *, window_end: datetime, delivered_requests: float) -> Horizon:
    """Line up intensity and demand for every slot from now to the window end."""
    intensities: list[float] = []
    fractions: list[float] = []
    positions: list[int] = []  # index of each horizon slot in ctx.carbon.slots and ctx.demand
    cursor = ctx.now
    slots = ctx.carbon.slots if ctx.carbon.available else ()
    for position, slot in enumerate(slots):
        covered = min(slot.end, window_end) - max(slot.start, cursor)
        if slot.start >= window_end or covered <= timedelta(0):
            continue
        intensities.append(max(0.0, float(slot.intensity)))
        fractions.append(covered / (slot.end - slot.start))
        positions.append(position)
        cursor = min(slot.end, window_end)
    forecast_slots = len(intensities)

    # Slots past the forecast (or all of them without carbon data) get a neutral intensity.
    filler = sum(intensities) / len(intensities) if intensities else 1.0
    position = positions[-1] + 1 if positions else 0
    while cursor < window_end:
        slot_end = min(window_end, _EPOCH + ((cursor - _EPOCH) // SLOT + 1) * SLOT)
        intensities.append(filler)
        fractions.append((slot_end - cursor) / SLOT)
        positions.append(position)
        position += 1
        cursor = slot_end

    demand, demand_given = _slot_demand(ctx, positions=positions, delivered_requests=delivered_requests,
                                        window_end=window_end)
    scaled = tuple(load * fraction for load, fraction in zip(demand, fractions, strict=True))
    return Horizon(intensities=tuple(intensities), demand=scaled, forecast_slots=forecast_slots,
                   demand_given=demand_given, carbon_blind=forecast_slots == 0)


def _slot_demand(
    ctx: PolicyContext, *, positions: list[int], delivered_requests: float, window_end: datetime
) -> tuple[list[float], bool]:
    """Return whole-slot demand at each position of ctx.demand, and whether ctx.demand had them all."""
    known = {index: max(0.0, float(value)) for index, value in enumerate(ctx.demand)
             if math.isfinite(float(value))}
    if known:
        fallback = sum(known.values()) / len(known)
    else:
        # Delivered requests per slot so far in this window, or 1.0 when nothing is known.
        elapsed = (ctx.now - (window_end - ctx.window)) / SLOT
        fallback = delivered_requests / elapsed if elapsed > 0 and delivered_requests > 0 else 1.0
    demand = [known.get(position, fallback) for position in positions]
    return demand, all(position in known for position in positions)


def planned_target_error(
    *, target_error: float, horizon: Horizon, delivered_requests: float, options: dict,
    hull: tuple[Flavour, ...],
) -> tuple[float, float]:
    """Return the target error the plan aims for and the hedge margin taken off it."""
    hedge = _option_fraction(options, "hedge", DEFAULT_HEDGE)
    default_error = 0.0 if horizon.demand_given else DEFAULT_GUESSED_DEMAND_ERROR
    demand_error = _option_fraction(options, "demandError", default_error)
    remaining_demand = sum(horizon.demand)
    total = delivered_requests + remaining_demand
    remaining = remaining_demand / total if total > 0 else 1.0
    # The maximum gap between one request's error and the target, over the hull flavours.
    spread = max(abs((1.0 - flavour.precision) - target_error) for flavour in hull)
    margin = min(target_error, remaining * (hedge + demand_error * spread))
    return target_error - margin, margin


def round_down_downgrade(shares: dict[str, float], hull: tuple[Flavour, ...]) -> dict[str, float]:
    """Round the traffic sent below each hull vertex down to whole percent.

    The result is more precise than the input or equal to it, and its integer
    percentages survive `integer_weights` unchanged.
    """
    rounded = dict.fromkeys(shares, 0.0)
    below = [sum(shares[flavour.name] for flavour in hull[index + 1:]) for index in range(len(hull))]
    floors = [math.floor(value * 100 + 1e-9) / 100 for value in below]
    for index, flavour in enumerate(hull):
        above = 1.0 if index == 0 else floors[index - 1]
        rounded[flavour.name] = round(above - floors[index], 2)
    return rounded


@register
class ForecastOptimal(Policy):
    """Least expected emissions over the rest of the quality window, re-planned every evaluation."""

    name = "forecast-optimal"
    # `demandError` is read too, but the session sets it (see ENGINE_SET_OPTIONS).
    accepted_options = {"hedge": PolicyOption(kind="number", low=0.0, high=1.0, default=DEFAULT_HEDGE)}

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        _, window_end, delivered, delivered_precision = window_bounds(ctx)
        horizon = build_horizon(ctx, window_end=window_end, delivered_requests=delivered)
        hull = flavour_hull(ctx.flavours)
        target_error, margin = planned_target_error(
            target_error=ctx.ledger.target_error, horizon=horizon, delivered_requests=delivered,
            options=ctx.options, hull=hull)
        plan = plan_window(
            flavours=ctx.flavours,
            intensities=horizon.intensities,
            demand=horizon.demand,
            target_error=target_error,
            delivered_requests=delivered,
            delivered_precision_sum=min(delivered_precision, delivered),
        )
        shares = round_down_downgrade(plan.shares[0], hull)
        return PolicyResult(shares=shares, diagnostics=_diagnostics(
            plan=plan, horizon=horizon, shares=shares, hull=hull, target_error=target_error, margin=margin,
            delivered=delivered, delivered_precision=delivered_precision))


def _diagnostics(
    *, plan: WindowPlan, horizon: Horizon, shares: dict[str, float], hull: tuple[Flavour, ...],
    target_error: float, margin: float, delivered: float, delivered_precision: float,
) -> dict:
    """Summarise the plan for the decision's diagnostics (JSON-safe, rounded)."""
    current = horizon.intensities[0]
    cleaner = sum(1 for value in horizon.intensities if value < current)
    rank = cleaner / (len(horizon.intensities) - 1) if len(horizon.intensities) > 1 else 0.5
    precision = {flavour.name: flavour.precision for flavour in hull}
    slot_precision = sum(share * precision.get(name, 0.0) for name, share in shares.items())
    return {
        "carbonBlind": horizon.carbon_blind,
        "horizonSlots": len(horizon.intensities),
        "forecastSlots": horizon.forecast_slots,
        "plannedTargetError": round(target_error, 6),
        "hedge": round(margin, 6),
        "deliveredRequests": round(delivered, 3),
        "deliveredPrecision": round(delivered_precision / delivered, 6) if delivered > 0 else None,
        "plannedWindowPrecision": round(plan.expected_precision, 6),
        "slotPrecision": round(slot_precision, 6),
        "marginalPrice": round(plan.marginal_price, 6) if math.isfinite(plan.marginal_price) else None,
        "planSlotIntensity": round(current, 3),
        # 0.0 = cleanest slot of the horizon, 1.0 = dirtiest.
        "planSlotRank": round(rank, 4),
        "planCleanSlot": shares.get(hull[0].name, 0.0) >= 1.0,
        "planIntensityThreshold": _rounded_or_none(plan_intensity_threshold(plan, hull)),
        "hull": list(plan.hull),
    }


def plan_intensity_threshold(plan: WindowPlan, hull: tuple[Flavour, ...]) -> float | None:
    """Return the intensity (gCO2/kWh) above which the plan moves traffic off the most precise flavour.

    A slot is downgraded when its intensity times the first hull step's energy
    saved per unit of error beats the marginal price. None means that no slot
    is downgraded, because the window has no error budget left or only one
    flavour is worth using.
    """
    if len(hull) < 2 or not math.isfinite(plan.marginal_price):
        return None
    first_step_slope = (hull[0].energy - hull[1].energy) / (hull[0].precision - hull[1].precision)
    return plan.marginal_price / first_step_slope


def plan_throttle_thresholds(diagnostics: dict, *, floor: float, ceiling: float) -> tuple[float, float]:
    """Return the throttle's intensity floor and ceiling (gCO2/kWh) made consistent with a plan.

    `diagnostics` are this policy's. In a slot the plan keeps fully precise
    the floor becomes infinite, so the throttle stays at 1.0. Otherwise the
    floor rises to the plan's intensity threshold, and the ceiling keeps the
    band's width above it. Diagnostics of other policies leave both unchanged.
    """
    if diagnostics.get("planCleanSlot") is True:
        return math.inf, math.inf
    threshold = diagnostics.get("planIntensityThreshold")
    if threshold is None or threshold <= floor:
        return floor, ceiling
    return float(threshold), max(ceiling, float(threshold) + (ceiling - floor))


def _rounded_or_none(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _option_fraction(options: dict, key: str, default: float) -> float:
    """Read a 0..1 option; reject a malformed value with its key instead of guessing."""
    if key not in options:
        return default
    try:
        value = float(options[key])
    except (TypeError, ValueError) as error:
        message = f"invalid forecast-optimal option {key}={options[key]!r}: expected a number"
        raise ValueError(message) from error
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"invalid forecast-optimal option {key}={value!r}: expected a fraction from 0 to 1")
    return value
