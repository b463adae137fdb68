"""The planner's greedy plan equals the linear program's optimum."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from engine.model import Flavour
from engine.planner import plan_window


def lp_optimum(*, flavours, intensities, demand, target_error, delivered_requests=0.0,
               delivered_precision_sum=0.0):
    """Solve the window LP over every flavour (hull or not) with HiGHS; None when infeasible."""
    slots, count = len(intensities), len(flavours)
    cost = [load * intensity * flavour.energy
            for load, intensity in zip(demand, intensities, strict=True) for flavour in flavours]
    # Request-weighted precision of the whole window must reach the target.
    precision_row = [-load * flavour.precision for load in demand for flavour in flavours]
    bound = delivered_precision_sum - (1 - target_error) * (delivered_requests + sum(demand))
    equality = np.zeros((slots, slots * count))
    for slot in range(slots):
        equality[slot, slot * count:(slot + 1) * count] = 1.0
    result = linprog(cost, A_ub=[precision_row], b_ub=[bound], A_eq=equality, b_eq=np.ones(slots),
                     bounds=(0, 1), method="highs")
    return result.fun if result.status == 0 else None


def plan_emissions(plan, flavours, intensities, demand):
    energy = {flavour.name: flavour.energy for flavour in flavours}
    return sum(load * intensity * sum(share * energy[name] for name, share in slot.items())
               for load, intensity, slot in zip(demand, intensities, plan.shares, strict=True))


def plan_precision_sum(plan, flavours, demand):
    precision = {flavour.name: flavour.precision for flavour in flavours}
    return sum(load * sum(share * precision[name] for name, share in slot.items())
               for load, slot in zip(demand, plan.shares, strict=True))


flavour_sets = st.lists(
    st.tuples(st.floats(0.0, 1.0), st.floats(0.01, 1.0)), min_size=1, max_size=4,
).map(lambda pairs: [Flavour(name=f"f{index}", precision=p, energy=e) for index, (p, e) in enumerate(pairs)])
slot_counts = st.integers(1, 6)


@settings(max_examples=300, deadline=None)
@given(
    flavours=flavour_sets,
    slots=slot_counts,
    data=st.data(),
    target_error=st.floats(0.0, 0.6),
)
def test_plan_matches_linprog_optimum(flavours, slots, data, target_error):
    intensities = data.draw(st.lists(st.floats(0.0, 400.0), min_size=slots, max_size=slots))
    demand = data.draw(st.lists(st.floats(0.0, 50.0), min_size=slots, max_size=slots))
    delivered = data.draw(st.floats(0.0, 100.0))
    delivered_precision = delivered * data.draw(st.floats(0.0, 1.0))

    plan = plan_window(flavours=flavours, intensities=intensities, demand=demand, target_error=target_error,
                       delivered_requests=delivered, delivered_precision_sum=delivered_precision)
    optimum = lp_optimum(flavours=flavours, intensities=intensities, demand=demand, target_error=target_error,
                         delivered_requests=delivered, delivered_precision_sum=delivered_precision)

    for slot in plan.shares:
        assert math.isclose(sum(slot.values()), 1.0, abs_tol=1e-9)
        assert min(slot.values()) >= 0.0
    emissions = plan_emissions(plan, flavours, intensities, demand)
    assert math.isclose(emissions, plan.expected_emissions, rel_tol=1e-9, abs_tol=1e-6)
    if optimum is None:
        # Infeasible: the best the window can do is everything on the most precise flavour.
        top = max(flavour.precision for flavour in flavours)
        assert math.isclose(plan_precision_sum(plan, flavours, demand), top * sum(demand), abs_tol=1e-6)
    else:
        required = (1 - target_error) * (delivered + sum(demand)) - delivered_precision
        assert plan_precision_sum(plan, flavours, demand) >= required - 1e-6
        assert math.isclose(emissions, optimum, rel_tol=1e-6, abs_tol=1e-5)


def vertex_optimum(*, flavours, intensities, demand, target_error):
    """Brute force over the LP's vertices: every slot pure, except at most one mixing two flavours.

    With one coupling constraint, some optimal solution has this form, so the
    minimum over all of them is the exact optimum (None when infeasible).
    """
    required = (1 - target_error) * sum(demand)
    best = None
    for pure in itertools.product(flavours, repeat=len(demand)):
        candidates = [list((f,) for f in pure)]
        pairs = itertools.permutations(flavours, 2)
        for slot, (first, second) in itertools.product(range(len(demand)), pairs):
            if first.precision == second.precision:
                continue
            # Mix slot between first and second so that the window just meets the target.
            loads = enumerate(zip(demand, pure, strict=True))
            others = sum(load * f.precision for index, (load, f) in loads if index != slot)
            needed = (required - others) / demand[slot]
            share = (needed - second.precision) / (first.precision - second.precision)
            if 0.0 <= share <= 1.0:
                mixed = [(f,) for f in pure]
                mixed[slot] = ((first, share), (second, 1 - share))
                candidates.append(mixed)
        for candidate in candidates:
            mixes = [slot if isinstance(slot[0], tuple) else ((slot[0], 1.0),) for slot in candidate]
            precision = sum(load * sum(f.precision * s for f, s in mix)
                            for load, mix in zip(demand, mixes, strict=True))
            if precision < required - 1e-9:
                continue
            emissions = sum(load * intensity * sum(f.energy * s for f, s in mix)
                            for load, intensity, mix in zip(demand, intensities, mixes, strict=True))
            best = emissions if best is None else min(best, emissions)
    return best


@settings(max_examples=150, deadline=None)
@given(
    flavours=flavour_sets,
    slots=st.integers(1, 3),
    data=st.data(),
    target_error=st.floats(0.0, 0.6),
)
def test_plan_matches_vertex_brute_force(flavours, slots, data, target_error):
    intensities = data.draw(st.lists(st.floats(0.0, 400.0), min_size=slots, max_size=slots))
    demand = data.draw(st.lists(st.floats(0.5, 50.0), min_size=slots, max_size=slots))

    plan = plan_window(flavours=flavours, intensities=intensities, demand=demand, target_error=target_error)
    brute = vertex_optimum(flavours=flavours, intensities=intensities, demand=demand,
                           target_error=target_error)

    if brute is not None:
        emissions = plan_emissions(plan, flavours, intensities, demand)
        assert math.isclose(emissions, brute, rel_tol=1e-7, abs_tol=1e-6)
    else:
        assert all(slot[plan.hull[0]] == 1.0 for slot in plan.shares)


def test_plan_spends_budget_in_dirtiest_slot():
    flavours = [Flavour("high", 1.0, 1.0), Flavour("mid", 0.6, 0.55), Flavour("low", 0.3, 0.3)]
    plan = plan_window(flavours=flavours, intensities=[180.0, 60.0], demand=[1.0, 2.0], target_error=0.2)

    # Budget 0.6: high->mid in the dirty slot (0.4), then 2/3 of mid->low there (0.2).
    assert math.isclose(plan.shares[0]["high"], 0.0, abs_tol=1e-12)
    assert math.isclose(plan.shares[0]["mid"], 1 / 3, rel_tol=1e-9)
    assert math.isclose(plan.shares[0]["low"], 2 / 3, rel_tol=1e-9)
    assert plan.shares[1] == {"high": 1.0, "mid": 0.0, "low": 0.0}
    assert math.isclose(plan.marginal_price, 180.0 * 0.25 / 0.3, rel_tol=1e-9)
    assert math.isclose(plan.expected_precision, 0.8, rel_tol=1e-9)
