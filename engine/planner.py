"""Forecast-optimal flavour mix over the rest of a quality window.

Inputs are the flavours (precision, energy), the intensity forecast and the
expected demand of every slot from now to the end of the current quality
window, and the requests and precision already delivered in that window. The
planner chooses the share x_tf of each slot t for each flavour f. Expected
emissions, sum_t D_t * I_t * sum_f x_tf * e_f, must be minimal, and the
window's request-weighted average precision must stay at or above
1 - target_error.

With linear costs this is a linear program with one coupling constraint, and a
greedy solves it exactly:

1. Only flavours on the lower convex hull of (error, energy) are worth using,
   where error = 1 - precision. A flavour above the hull is beaten by a mix of
   its two hull neighbours that has the same error and less energy.
2. Walking the hull from the most precise flavour, each edge is a "downgrade
   step" that moves a slot's traffic one hull vertex down. Moving all of slot
   t along step k costs D_t * dError_k of the error budget and saves
   D_t * I_t * dEnergy_k of emissions. Its value is therefore the ratio
   I_t * dEnergy_k / dError_k, the carbon saved per unit of error.
3. Convexity makes the ratios of one slot's steps strictly decreasing, so
   taking steps in decreasing ratio order never takes step k+1 of a slot
   before step k. Taking them in that order until the budget is spent, the
   last one in part, is the fractional knapsack and is optimal for the LP.

Steps of equal ratio form one group, and the group that exhausts the budget is
filled in the same proportion in every slot of the group. With a flat or
missing forecast every slot ties, so the plan is the carbon-blind static mix
that just meets the target instead of spending the budget in the first slots.

Everything here is a pure function of its arguments: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.model import Flavour

# Relative tolerance under which two ratios count as tied, and under which a
# hull vertex counts as lying on the line between its neighbours.
_RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class DowngradeStep:
    """One hull edge: moving traffic from `upper` to `lower` (flavour names)."""

    upper: str
    lower: str
    error: float  # precision given up per request moved (0.0-1.0 scale)
    energy: float  # energy saved per request moved (relative units)


@dataclass(frozen=True)
class WindowPlan:
    """Per-slot shares for the rest of a window and the figures behind them.

    `shares[t]` maps every enabled flavour name to its share of slot t (the
    shares of a slot sum to 1). `marginal_price` is the carbon saved per unit
    of error of the last step taken: 0.0 when the budget is not binding,
    infinity when no step could be taken. `error_budget` is the precision sum
    (in requests) that may still be given up. It is negative when the window
    is already below target. `error_planned` is the part of it the plan uses.
    """

    shares: tuple[dict[str, float], ...]
    hull: tuple[str, ...]
    marginal_price: float
    error_budget: float
    error_planned: float
    expected_emissions: float
    expected_precision: float  # window average precision if the plan is followed


def flavour_hull(flavours: Sequence[Flavour]) -> tuple[Flavour, ...]:
    """Return the enabled flavours on the lower convex hull of (error, energy).

    The hull starts at the most precise flavour (the cheapest of those tied on
    precision) and runs towards more error with strictly decreasing energy and
    strictly decreasing energy saved per unit of error.
    """
    candidates = [flavour for flavour in flavours if flavour.enabled]
    if not candidates:
        raise ValueError("no enabled flavour to plan with; enable at least one flavour")
    for flavour in candidates:
        _check_flavour(flavour)

    ordered = sorted(candidates, key=lambda flavour: (-flavour.precision, flavour.energy, flavour.name))
    hull: list[Flavour] = [ordered[0]]
    for flavour in ordered[1:]:
        # A flavour that is less precise and not cheaper than the last vertex is dominated.
        if flavour.energy >= hull[-1].energy or flavour.precision >= hull[-1].precision:
            continue
        while len(hull) >= 2 and not _turns_convex(hull[-2], hull[-1], flavour):
            hull.pop()
        hull.append(flavour)
    return tuple(hull)


def downgrade_steps(hull: Sequence[Flavour]) -> tuple[DowngradeStep, ...]:
    """Return the edges of a hull from `flavour_hull`, most precise first."""
    return tuple(
        DowngradeStep(
            upper=upper.name,
            lower=lower.name,
            error=upper.precision - lower.precision,
            energy=upper.energy - lower.energy,
        )
        for upper, lower in zip(hull, hull[1:], strict=False)
    )


def static_mix(*, flavours: Sequence[Flavour], target_error: float) -> dict[str, float]:
    """Return the carbon-blind constant mix with the least energy that just meets the target.

    This is the plan for a single slot of unit intensity with nothing delivered
    yet, so it uses the hull flavours cheapest first within the error budget.
    """
    plan = plan_window(flavours=flavours, intensities=[1.0], demand=[1.0], target_error=target_error)
    return plan.shares[0]


def plan_window(
    *,
    flavours: Sequence[Flavour],
    intensities: Sequence[float],
    demand: Sequence[float],
    target_error: float,
    delivered_requests: float = 0.0,
    delivered_precision_sum: float = 0.0,
) -> WindowPlan:
    """Plan the shares of every remaining slot of a window with least expected emissions.

    `intensities` (gCO2/kWh) and `demand` (requests) are aligned per slot,
    starting with the current slot. `delivered_requests` and
    `delivered_precision_sum` are what the window has already served. When the
    window is already below target, every slot goes to the most precise flavour,
    because no plan can do better for the window's average.
    """
    _check_inputs(intensities=intensities, demand=demand, target_error=target_error,
                  delivered_requests=delivered_requests, delivered_precision_sum=delivered_precision_sum)
    hull = flavour_hull(flavours)
    steps = downgrade_steps(hull)
    top = hull[0]

    # Precision sum the window may still give up below "everything on the most precise flavour".
    total_requests = delivered_requests + math.fsum(demand)
    best_precision_sum = delivered_precision_sum + top.precision * math.fsum(demand)
    budget = best_precision_sum - (1.0 - target_error) * total_requests

    depth, price, used = _fill_steps(steps=steps, intensities=intensities, demand=demand, budget=budget)
    names = [flavour.name for flavour in flavours if flavour.enabled]
    shares = tuple(_slot_shares(hull=hull, depth=slot_depth, names=names) for slot_depth in depth)

    emissions = math.fsum(
        load * intensity * sum(share * _energy_of(hull, name) for name, share in slot.items())
        for load, intensity, slot in zip(demand, intensities, shares, strict=True)
    )
    precision_sum = best_precision_sum - used
    average = precision_sum / total_requests if total_requests > 0 else top.precision
    return WindowPlan(
        shares=shares,
        hull=tuple(flavour.name for flavour in hull),
        marginal_price=price,
        error_budget=budget,
        error_planned=used,
        expected_emissions=emissions,
        expected_precision=average,
    )


def _fill_steps(
    *,
    steps: Sequence[DowngradeStep],
    intensities: Sequence[float],
    demand: Sequence[float],
    budget: float,
) -> tuple[list[list[float]], float, float]:
    """Take downgrade steps in decreasing ratio order until the error budget is spent.

    Returns, per slot and step, the fraction of the slot's traffic moved along
    that step; the marginal price; and the error budget used.
    """
    depth = [[0.0] * len(steps) for _ in intensities]
    if budget <= 0 or not steps:
        return depth, (math.inf if steps else 0.0), 0.0

    # Every (slot, step) with a positive saving, best carbon saved per unit of error first.
    candidates = [
        (intensity * step.energy / step.error, slot, index)
        for slot, intensity in enumerate(intensities)
        for index, step in enumerate(steps)
        if intensity > 0
    ]
    candidates.sort(key=lambda item: (-item[0], item[1], item[2]))

    remaining = budget
    price = 0.0
    for group in _tied_groups(candidates):
        capacity = math.fsum(demand[slot] * steps[index].error for _, slot, index in group)
        fraction = 1.0 if capacity <= remaining else remaining / capacity
        for _, slot, index in group:
            depth[slot][index] = fraction
        remaining -= capacity * fraction
        price = group[0][0]
        if fraction < 1.0:
            break
    else:
        # Every worthwhile step fits, so the budget does not bind and extra error is free.
        price = 0.0
    return depth, price, budget - max(remaining, 0.0)


def _tied_groups(candidates: list[tuple[float, int, int]]) -> list[list[tuple[float, int, int]]]:
    """Split ratio-sorted candidates into runs of equal ratio."""
    groups: list[list[tuple[float, int, int]]] = []
    for candidate in candidates:
        if groups and _tied(groups[-1][0][0], candidate[0]):
            groups[-1].append(candidate)
        else:
            groups.append([candidate])
    return groups


def _tied(first: float, second: float) -> bool:
    return abs(first - second) <= _RELATIVE_TOLERANCE * max(1.0, abs(first), abs(second))


def _slot_shares(
    *, hull: Sequence[Flavour], depth: Sequence[float], names: Sequence[str]
) -> dict[str, float]:
    """Turn the fractions moved along each hull step into shares per flavour."""
    shares = dict.fromkeys(names, 0.0)
    reached = [1.0, *depth]  # fraction of traffic that reached hull vertex k or below
    for index, flavour in enumerate(hull):
        below = reached[index + 1] if index + 1 < len(reached) else 0.0
        shares[flavour.name] = max(0.0, reached[index] - below)
    return shares


def _energy_of(hull: Sequence[Flavour], name: str) -> float:
    for flavour in hull:
        if flavour.name == name:
            return flavour.energy
    return 0.0  # off-hull flavours always get share 0


def _turns_convex(first: Flavour, middle: Flavour, last: Flavour) -> bool:
    """Tell whether `middle` lies strictly below the segment from `first` to `last` in (error, energy)."""
    saving_before = (first.energy - middle.energy) / (first.precision - middle.precision)
    saving_after = (middle.energy - last.energy) / (middle.precision - last.precision)
    return saving_before > saving_after and not _tied(saving_before, saving_after)


def _check_flavour(flavour: Flavour) -> None:
    if not (0.0 <= flavour.precision <= 1.0) or not math.isfinite(flavour.precision):
        raise ValueError(
            f"invalid precision {flavour.precision!r} for flavour {flavour.name!r}: "
            "expected a fraction from 0.0 to 1.0"
        )
    if not (flavour.energy >= 0.0) or not math.isfinite(flavour.energy):
        raise ValueError(
            f"invalid energy {flavour.energy!r} for flavour {flavour.name!r}: "
            "expected a finite number >= 0 (relative to the most precise flavour)"
        )


def _check_inputs(
    *,
    intensities: Sequence[float],
    demand: Sequence[float],
    target_error: float,
    delivered_requests: float,
    delivered_precision_sum: float,
) -> None:
    if len(intensities) != len(demand):
        raise ValueError(
            f"intensities and demand must cover the same slots: got {len(intensities)} "
            f"intensities and {len(demand)} demand values"
        )
    if not (0.0 <= target_error <= 1.0):
        raise ValueError(f"invalid target error {target_error!r}: expected a fraction from 0.0 to 1.0")
    for slot, value in enumerate(intensities):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid intensity {value!r} in slot {slot}: expected a finite gCO2/kWh >= 0")
    for slot, value in enumerate(demand):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid demand {value!r} in slot {slot}: expected a finite request count >= 0")
    if not (0.0 <= delivered_requests) or not math.isfinite(delivered_requests):
        raise ValueError(f"invalid delivered request count {delivered_requests!r}: expected >= 0")
    if not (0.0 <= delivered_precision_sum <= delivered_requests * (1 + _RELATIVE_TOLERANCE)):
        raise ValueError(
            f"invalid delivered precision sum {delivered_precision_sum!r}: expected from 0 to the "
            f"delivered request count {delivered_requests!r}"
        )
