"""Policies: shared guarantees and the direction each carbon-aware policy moves weight."""

import random
from dataclasses import replace

import pytest

from engine.model import Flavour, LedgerView, PolicyContext
from engine.policies import POLICIES, integer_weights
from engine.policies.allocation import budget_allowance, ordered_enabled
from engine.policies.random import RandomPolicy
from tests.engine.fakes import START, THREE_FLAVOURS, snapshot

OWN_POLICIES = ["p100", "random", "round-robin", "credit-greedy", "forecast-aware", "forecast-aware-global"]


def context(intensities=(150.0, 150.0, 150.0), *, balance=0.0, flavours=THREE_FLAVOURS, available=True,
            evaluation=0, demand=(), options=None) -> PolicyContext:
    return PolicyContext(
        flavours=flavours,
        carbon=snapshot(list(intensities), available=available),
        ledger=LedgerView(balance=balance, credit_min=-0.5, credit_max=0.5, target_error=0.1),
        now=START, demand=demand, intensity_floor=100.0, intensity_ceiling=250.0,
        evaluation=evaluation, options=options or {})


def weights_for(policy_name: str, ctx: PolicyContext) -> dict[str, int]:
    policy = RandomPolicy(rng=random.Random(7)) if policy_name == "random" else POLICIES[policy_name]()
    result = policy.decide(ctx)
    enabled = [flavour.name for flavour in ordered_enabled(ctx.flavours)]
    return integer_weights(result.shares, enabled)


def test_all_six_policies_registered():
    assert set(OWN_POLICIES) <= set(POLICIES)


@pytest.mark.parametrize("policy_name", OWN_POLICIES)
@pytest.mark.parametrize("intensities", [(40.0, 45.0), (150.0, 300.0), (400.0, 100.0)])
@pytest.mark.parametrize("balance", [-0.5, 0.0, 0.5])
def test_weights_are_integers_summing_to_100(policy_name, intensities, balance):
    weights = weights_for(policy_name, context(intensities, balance=balance))
    assert sum(weights.values()) == 100
    assert all(isinstance(value, int) and value >= 0 for value in weights.values())


@pytest.mark.parametrize("policy_name", OWN_POLICIES)
def test_disabled_flavour_gets_zero(policy_name):
    flavours = (THREE_FLAVOURS[0], replace(THREE_FLAVOURS[1], enabled=False), THREE_FLAVOURS[2])
    for evaluation in range(3):
        ctx = context((300.0, 300.0), balance=0.5, flavours=flavours, evaluation=evaluation)
        weights = weights_for(policy_name, ctx)
        assert weights.get("mid", 0) == 0
        assert sum(weights.values()) == 100


@pytest.mark.parametrize("policy_name", OWN_POLICIES)
def test_decides_without_carbon_data(policy_name):
    ctx = context(available=False, balance=0.2)
    weights = weights_for(policy_name, ctx)
    assert sum(weights.values()) == 100


@pytest.mark.parametrize("policy_name", ["credit-greedy", "forecast-aware", "forecast-aware-global"])
def test_carbon_blind_fallback_meets_target_at_zero_balance(policy_name):
    ctx = context(available=False, balance=0.0)
    result = POLICIES[policy_name]().decide(ctx)
    precision = {flavour.name: flavour.precision for flavour in THREE_FLAVOURS}
    expected = sum(share * precision[name] for name, share in result.shares.items()) / sum(
        result.shares.values())
    assert expected == pytest.approx(0.9, abs=1e-9)
    assert result.diagnostics["carbonBlind"] is True


def test_p100_sends_everything_to_most_precise():
    shuffled = (THREE_FLAVOURS[2], THREE_FLAVOURS[0], THREE_FLAVOURS[1])
    assert weights_for("p100", context(flavours=shuffled)) == {"high": 100, "mid": 0, "low": 0}


def test_round_robin_rotates_whole_share():
    chosen = [max(weights, key=weights.get)
              for weights in (weights_for("round-robin", context(evaluation=i)) for i in range(4))]
    assert chosen == ["high", "mid", "low", "high"]


def test_random_is_reproducible_with_seeded_rng():
    first = RandomPolicy(rng=random.Random(3)).decide(context()).shares
    second = RandomPolicy(rng=random.Random(3)).decide(context()).shares
    assert first == second
    assert len(set(first.values())) > 1


def test_credit_greedy_dirtier_downgrades_more():
    shares = [weights_for("credit-greedy", context((value, value)))["high"] for value in (80, 150, 200, 260)]
    assert shares[0] > shares[1] > shares[2] > shares[3]


def test_credit_greedy_more_credit_downgrades_more():
    shares = [weights_for("credit-greedy", context(balance=value))["high"] for value in (-0.4, 0.0, 0.4)]
    assert shares[0] > shares[1] > shares[2]


def test_credit_greedy_at_credit_min_is_p100():
    assert weights_for("credit-greedy", context((300.0,), balance=-0.5))["high"] == 100


def test_credit_greedy_allowance_capped_below_100():
    flavours = (Flavour("high", 1.0, 1.0), Flavour("low", 0.1, 0.1))
    ctx = replace(context((400.0,), balance=0.5, flavours=flavours),
                  ledger=LedgerView(balance=0.5, credit_min=-0.5, credit_max=0.5, target_error=0.9))
    weights = weights_for("credit-greedy", ctx)
    assert weights["high"] >= 10


def test_credit_greedy_prefers_efficient_flavour():
    flavours = (Flavour("high", 1.0, 1.0), Flavour("efficient", 0.8, 0.4), Flavour("wasteful", 0.5, 0.9))
    weights = weights_for("credit-greedy", context((250.0,), balance=0.3, flavours=flavours))
    assert weights["efficient"] > weights["wasteful"]


def test_budget_allowance_meets_target_error():
    enabled = ordered_enabled(THREE_FLAVOURS)
    allowance = budget_allowance(enabled, target_error=0.1)
    # Split by energy saved per error: mid 0.4/0.5 = 0.8, low 0.7/0.75 = 0.933.
    mid_share = 0.8 / (0.8 + 0.7 / 0.75)
    mix_precision = mid_share * 0.5 + (1 - mid_share) * 0.25
    assert 1 - ((1 - allowance) + allowance * mix_precision) == pytest.approx(0.1)


def test_forecast_aware_rising_keeps_precision():
    rising = weights_for("forecast-aware", context((150.0, 200.0, 220.0)))["high"]
    flat = weights_for("forecast-aware", context((150.0, 150.0, 150.0)))["high"]
    falling = weights_for("forecast-aware", context((150.0, 100.0, 90.0)))["high"]
    assert rising > flat > falling


def test_forecast_aware_ignores_trend_inside_dead_band():
    slight = POLICIES["forecast-aware"]().decide(context((150.0, 153.0, 154.0)))
    assert slight.diagnostics["trendFactor"] == 1.0
    assert weights_for("forecast-aware", context((150.0, 153.0, 154.0))) == weights_for(
        "credit-greedy", context((150.0, 153.0, 154.0)))


def test_global_red_zone_downgrades_more_than_green_zone():
    red = weights_for("forecast-aware-global", context((260.0,) * 8))["high"]
    green = weights_for("forecast-aware-global", context((90.0,) * 8))["high"]
    assert red < green
    assert POLICIES["forecast-aware-global"]().decide(context((260.0,) * 8)).diagnostics["zone"] == "red"


def test_global_look_ahead_saves_credit_for_dirtier_slots():
    dirtier_later = weights_for("forecast-aware-global", context((150.0, 150.0) + (240.0,) * 6))["high"]
    cleaner_later = weights_for("forecast-aware-global", context((150.0, 150.0) + (110.0,) * 6))["high"]
    assert dirtier_later > cleaner_later


def test_global_credit_pressure_pulls_to_middle():
    low = weights_for("forecast-aware-global", context(balance=-0.4))["high"]
    high = weights_for("forecast-aware-global", context(balance=0.4))["high"]
    assert low > high


def test_global_rising_demand_keeps_credit():
    rising = POLICIES["forecast-aware-global"]().decide(context(demand=(100.0, 150.0, 150.0)))
    falling = POLICIES["forecast-aware-global"]().decide(context(demand=(100.0, 60.0, 60.0)))
    assert rising.diagnostics["demandFactor"] < 1.0 < falling.diagnostics["demandFactor"]


def test_global_emissions_over_plan_raise_allowance():
    over = {"windowEmissions": {"emitted": 95.0, "baseline": 100.0, "planned": 85.0}}
    under = {"windowEmissions": {"emitted": 80.0, "baseline": 100.0, "planned": 85.0}}
    over_result = POLICIES["forecast-aware-global"]().decide(context(options=over))
    under_result = POLICIES["forecast-aware-global"]().decide(context(options=under))
    assert over_result.diagnostics["emissionsFactor"] > 1.0 > under_result.diagnostics["emissionsFactor"]
    assert over_result.diagnostics["allowance"] > under_result.diagnostics["allowance"]
