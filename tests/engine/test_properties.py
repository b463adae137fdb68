"""Property tests: every policy keeps its guarantees on arbitrary flavours, ledgers and grids."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.model import Flavour, LedgerView, PolicyContext
from engine.policies import POLICIES, integer_weights
from engine.policies.allocation import downgrade_split, ordered_enabled
from engine.policies.random import RandomPolicy
from engine.throttle import compute_throttle, replica_ceilings
from engine.validation import ComponentBounds
from tests.engine.fakes import START, snapshot

OWN_POLICIES = ["p100", "random", "round-robin", "credit-greedy", "forecast-aware", "forecast-aware-global"]


@st.composite
def flavour_sets(draw):
    count = draw(st.integers(min_value=1, max_value=5))
    flavours = []
    for index in range(count):
        flavours.append(Flavour(
            name=f"f{index}",
            precision=draw(st.floats(min_value=0.0, max_value=1.0)),
            energy=draw(st.floats(min_value=0.01, max_value=2.0)),
            enabled=draw(st.booleans()),
        ))
    if not any(flavour.enabled for flavour in flavours):
        flavours[0] = Flavour(flavours[0].name, flavours[0].precision, flavours[0].energy, True)
    return tuple(flavours)


@settings(max_examples=150, deadline=None)
@given(
    policy_name=st.sampled_from(OWN_POLICIES),
    flavours=flavour_sets(),
    balance=st.floats(min_value=-1.0, max_value=1.0),
    target_error=st.floats(min_value=0.0, max_value=0.99),
    intensities=st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=0, max_size=12),
    demand=st.lists(st.floats(min_value=0.0, max_value=1e6), max_size=12),
    evaluation=st.integers(min_value=0, max_value=1000),
)
def test_policy_weights_always_valid(policy_name, flavours, balance, target_error, intensities, demand,
                                     evaluation):
    ctx = PolicyContext(
        flavours=flavours,
        carbon=snapshot(intensities, available=bool(intensities)),
        ledger=LedgerView(balance=balance, credit_min=-1.0, credit_max=1.0, target_error=target_error),
        now=START, demand=tuple(demand), intensity_floor=100.0, intensity_ceiling=250.0,
        evaluation=evaluation)
    if policy_name == "random":
        policy = RandomPolicy(rng=random.Random(evaluation))
    else:
        policy = POLICIES[policy_name]()
    result = policy.decide(ctx)
    enabled = [flavour.name for flavour in ordered_enabled(flavours)]
    weights = integer_weights(result.shares, enabled)

    assert sum(weights.values()) == 100
    assert all(isinstance(weight, int) and weight >= 0 for weight in weights.values())
    assert set(weights) == set(enabled)
    assert all(share >= 0 for share in result.shares.values())


@settings(max_examples=200, deadline=None)
@given(
    balance=st.floats(min_value=-2.0, max_value=2.0),
    now=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1000.0)),
    following=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1000.0)),
    throttle_min=st.floats(min_value=0.0, max_value=1.0),
    low=st.integers(min_value=0, max_value=20),
    extra=st.integers(min_value=0, max_value=50),
)
def test_throttle_and_ceilings_stay_in_bounds(balance, now, following, throttle_min, low, extra):
    result = compute_throttle(balance=balance, credit_min=-0.5, credit_max=0.5, intensity_now=now,
                              intensity_next=following, floor=100.0, ceiling=250.0, throttle_min=throttle_min)
    assert throttle_min <= result.throttle <= 1.0
    assert 0.0 <= result.credits_ratio <= 1.0
    assert 0.0 <= result.intensity_ratio <= 1.0
    bounds = {"router": ComponentBounds(low, low + extra), "target": ComponentBounds(low, low + extra)}
    ceilings = replica_ceilings(bounds, throttle=result.throttle)
    assert ceilings["router"] == low + extra
    assert low <= ceilings["target"] <= low + extra


def test_downgrade_split_subnormal_gap_finite():
    # A precision gap of 5e-324 overflows energy_saved / error_added to inf.
    enabled = [Flavour("high", 5e-324, 1.0), Flavour("low", 0.0, 0.5), Flavour("mid", 0.0, 0.8)]
    split = downgrade_split(enabled)

    assert all(math.isfinite(fraction) for fraction in split.values())
    assert sum(split.values()) == pytest.approx(1.0)
