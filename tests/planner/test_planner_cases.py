"""Planner behaviour on the edge cases a schedule can produce."""

from __future__ import annotations

import math

import pytest

from engine.model import Flavour
from engine.planner import flavour_hull, plan_window, static_mix

REFERENCE_FLAVOURS = (Flavour("high", 1.0, 1.0), Flavour("mid", 0.5, 0.6), Flavour("low", 0.3, 0.3))


def test_static_mix_just_meets_target():
    mix = static_mix(flavours=REFERENCE_FLAVOURS, target_error=0.15)

    # mid lies above the high-low segment, so the mix is high and low only.
    assert mix["mid"] == 0.0
    assert math.isclose(mix["low"], 0.15 / 0.7, rel_tol=1e-12)
    assert math.isclose(mix["high"] * 1.0 + mix["low"] * 0.3, 0.85, rel_tol=1e-12)


def test_flat_forecast_gives_static_mix_in_every_slot():
    mix = static_mix(flavours=REFERENCE_FLAVOURS, target_error=0.15)
    plan = plan_window(flavours=REFERENCE_FLAVOURS, intensities=[120.0] * 48, demand=[10.0] * 48,
                       target_error=0.15)

    for slot in plan.shares:
        for name in mix:
            assert math.isclose(slot[name], mix[name], rel_tol=1e-9, abs_tol=1e-12)


def test_one_flavour_takes_everything():
    only = (Flavour("only", 0.8, 1.0),)
    plan = plan_window(flavours=only, intensities=[200.0, 50.0], demand=[5.0, 5.0], target_error=0.1)

    assert plan.shares == ({"only": 1.0}, {"only": 1.0})
    assert plan.hull == ("only",)
    assert math.isclose(plan.expected_precision, 0.8)


def test_never_worth_it_flavour_gets_no_traffic():
    # "pricey" saves 0.05 energy for 0.3 error: mixing high and low does better at every error level.
    flavours = (Flavour("high", 1.0, 1.0), Flavour("pricey", 0.7, 0.95), Flavour("low", 0.3, 0.3))
    plan = plan_window(flavours=flavours, intensities=[90.0, 250.0, 40.0], demand=[3.0, 3.0, 3.0],
                       target_error=0.3)

    assert flavour_hull(flavours) == (flavours[0], flavours[2])
    assert all(slot["pricey"] == 0.0 for slot in plan.shares)
    assert plan.shares[1]["low"] == 1.0


def test_cheaper_but_less_precise_dominated_flavour_is_skipped():
    flavours = (Flavour("high", 1.0, 1.0), Flavour("worse", 0.6, 1.2), Flavour("low", 0.4, 0.5))

    assert [flavour.name for flavour in flavour_hull(flavours)] == ["high", "low"]


def test_overspent_budget_sends_all_to_most_precise():
    plan = plan_window(flavours=REFERENCE_FLAVOURS, intensities=[250.0, 250.0], demand=[10.0, 10.0],
                       target_error=0.15, delivered_requests=100.0, delivered_precision_sum=70.0)

    assert plan.error_budget < 0
    assert plan.shares == ({"high": 1.0, "mid": 0.0, "low": 0.0},) * 2
    assert plan.marginal_price == math.inf


def test_zero_demand_slots_follow_marginal_price():
    # The dirty slot has no demand: planning it costs nothing, and it gets the full downgrade.
    plan = plan_window(flavours=REFERENCE_FLAVOURS, intensities=[300.0, 100.0, 50.0],
                       demand=[0.0, 10.0, 10.0], target_error=0.1)

    assert plan.shares[0]["low"] == 1.0
    assert math.isclose(plan.shares[1]["low"], 2.0 / 7.0, rel_tol=1e-9)
    assert plan.shares[2]["high"] == 1.0


def test_zero_demand_everywhere_is_valid():
    plan = plan_window(flavours=REFERENCE_FLAVOURS, intensities=[100.0, 200.0], demand=[0.0, 0.0],
                       target_error=0.15)

    assert plan.expected_emissions == 0.0
    assert all(math.isclose(sum(slot.values()), 1.0) for slot in plan.shares)


def test_surplus_from_delivered_precision_is_spent():
    # The window so far ran at precision 1.0, so the rest may go further below target.
    ahead = plan_window(flavours=REFERENCE_FLAVOURS, intensities=[200.0], demand=[10.0], target_error=0.15,
                        delivered_requests=30.0, delivered_precision_sum=30.0)
    fresh = plan_window(flavours=REFERENCE_FLAVOURS, intensities=[200.0], demand=[10.0], target_error=0.15)

    assert ahead.shares[0]["low"] > fresh.shares[0]["low"]
    assert math.isclose(ahead.expected_precision, 0.85, rel_tol=1e-9)


def test_disabled_flavour_is_never_planned():
    flavours = (Flavour("high", 1.0, 1.0), Flavour("low", 0.3, 0.3, enabled=False))
    plan = plan_window(flavours=flavours, intensities=[200.0], demand=[1.0], target_error=0.5)

    assert plan.shares == ({"high": 1.0},)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"intensities": [1.0, 2.0], "demand": [1.0]}, "same slots"),
        ({"intensities": [-5.0], "demand": [1.0]}, "invalid intensity -5.0"),
        ({"intensities": [float("nan")], "demand": [1.0]}, "invalid intensity nan"),
        ({"intensities": [1.0], "demand": [-1.0]}, "invalid demand -1.0"),
        ({"intensities": [1.0], "demand": [1.0], "target_error": 1.5}, "invalid target error 1.5"),
        ({"intensities": [1.0], "demand": [1.0], "delivered_requests": 2.0, "delivered_precision_sum": 3.0},
         "invalid delivered precision sum"),
    ],
)
def test_invalid_input_is_rejected_with_value(kwargs, message):
    arguments = {"flavours": REFERENCE_FLAVOURS, "target_error": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_window(**arguments)


def test_invalid_flavour_is_rejected():
    with pytest.raises(ValueError, match="invalid precision 1.5 for flavour 'odd'"):
        flavour_hull([Flavour("odd", 1.5, 1.0)])
    with pytest.raises(ValueError, match="no enabled flavour"):
        flavour_hull([Flavour("off", 1.0, 1.0, enabled=False)])
