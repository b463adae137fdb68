"""The forecast-optimal policy: horizon building, hedging, rounding and receding-horizon quality."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from engine.model import SLOT, CarbonSlot, CarbonSnapshot, Flavour, LedgerView, PolicyContext
from engine.planner import plan_window
from engine.policies import POLICIES, integer_weights
from engine.policies.forecast_optimal import (
    ForecastOptimal,
    build_horizon,
    plan_throttle_thresholds,
    round_down_downgrade,
)
from engine.throttle import compute_throttle

FLAVOURS = (Flavour("high", 1.0, 1.0), Flavour("mid", 0.5, 0.6), Flavour("low", 0.3, 0.3))
DAY = datetime(2023, 3, 21, tzinfo=UTC)


def snapshot(now: datetime, intensities: list[float]) -> CarbonSnapshot:
    start = DAY + ((now - DAY) // SLOT) * SLOT
    slots = tuple(CarbonSlot(start + index * SLOT, start + (index + 1) * SLOT, value)
                  for index, value in enumerate(intensities))
    return CarbonSnapshot(now=now, slots=slots, source="test")


def context(now: datetime, intensities: list[float], *, demand=(), ledger=None,
            options=None) -> PolicyContext:
    return PolicyContext(
        flavours=FLAVOURS, carbon=snapshot(now, intensities), now=now, demand=tuple(demand),
        ledger=ledger or LedgerView(target_error=0.15), options=options or {},
    )


def replay_window(intensities: list[float], demand: list[float], *,
                  target_error: float) -> tuple[float, float]:
    """Run the policy slot by slot over one day with exact forecasts; return (precision, emissions)."""
    requests = precision_sum = emissions = 0.0
    energy = {flavour.name: flavour.energy for flavour in FLAVOURS}
    precision = {flavour.name: flavour.precision for flavour in FLAVOURS}
    for slot in range(len(intensities)):
        now = DAY + slot * SLOT
        ledger = LedgerView(target_error=target_error, window_start=DAY, window_requests=requests,
                            window_precision_sum=precision_sum)
        ctx = context(now, intensities[slot:], demand=demand[slot:], ledger=ledger)
        result = ForecastOptimal().decide(ctx)
        weights = integer_weights(result.shares, [flavour.name for flavour in FLAVOURS])
        requests += demand[slot]
        precision_sum += demand[slot] * sum(weights[name] * precision[name] for name in weights) / 100
        slot_energy = sum(weights[name] * energy[name] for name in weights) / 100
        emissions += demand[slot] * intensities[slot] * slot_energy
    return precision_sum / requests, emissions


def test_policy_is_registered():
    assert POLICIES["forecast-optimal"] is ForecastOptimal


@pytest.mark.parametrize("seed", range(25))
def test_exact_forecast_keeps_window_target(seed):
    generator = random.Random(seed)
    intensities = [generator.uniform(40, 250) for _ in range(48)]
    demand = [generator.uniform(50, 500) for _ in range(48)]
    target_error = generator.choice([0.05, 0.1, 0.15, 0.3])

    precision, emissions = replay_window(intensities, demand, target_error=target_error)
    optimum = plan_window(flavours=FLAVOURS, intensities=intensities, demand=demand,
                          target_error=target_error)
    baseline = sum(load * intensity for load, intensity in zip(demand, intensities, strict=True))

    assert precision >= 1 - target_error - 1e-12
    # Hedge and whole-percent rounding cost little: at least 97% of the perfect-foresight saving.
    assert baseline - emissions >= 0.97 * (baseline - optimum.expected_emissions)


def test_no_carbon_data_serves_static_mix():
    ctx = PolicyContext(flavours=FLAVOURS, carbon=CarbonSnapshot(now=DAY, available=False), now=DAY,
                        ledger=LedgerView(target_error=0.15))
    result = ForecastOptimal().decide(ctx)

    # Demand is unknown too, so the hedge assumes a demand error of 0.1. The largest gap between
    # a hull flavour's error and the target is |0.7 - 0.15| = 0.55, so the target becomes
    # 0.15 - 0.001 - 0.1 * 0.55 = 0.094, and 0.094 / 0.7 = 13.4% low, rounded down.
    assert result.shares == {"high": 0.87, "mid": 0.0, "low": 0.13}
    assert result.diagnostics["carbonBlind"] is True
    assert result.diagnostics["horizonSlots"] == 48


def test_flat_forecast_serves_static_mix():
    result = ForecastOptimal().decide(context(DAY, [120.0] * 48, demand=[10.0] * 48))

    assert result.shares == {"high": 0.79, "mid": 0.0, "low": 0.21}


def test_dirtiest_slot_goes_low_cleanest_stays_high():
    intensities = [100.0] * 48
    intensities[0] = 250.0
    dirty = ForecastOptimal().decide(context(DAY, intensities, demand=[10.0] * 48))
    intensities[0] = 40.0
    clean = ForecastOptimal().decide(context(DAY, intensities, demand=[10.0] * 48))

    assert dirty.shares["low"] == 1.0
    assert dirty.diagnostics["planSlotRank"] == 1.0
    assert dirty.diagnostics["planCleanSlot"] is False
    assert clean.shares["high"] == 1.0
    assert clean.diagnostics["planSlotRank"] == 0.0
    assert clean.diagnostics["planCleanSlot"] is True


def test_intensity_threshold_splits_clean_and_dirty_slots():
    intensities = [40.0 + 5 * slot for slot in range(48)]
    result = ForecastOptimal().decide(context(DAY, intensities, demand=[10.0] * 48))
    threshold = result.diagnostics["planIntensityThreshold"]

    # About 21% of the slots go low, so the threshold sits near the 79th percentile of the horizon.
    assert 40.0 + 5 * 36 <= threshold <= 40.0 + 5 * 38
    assert result.diagnostics["planCleanSlot"] is (intensities[0] < threshold)


def test_no_threshold_without_budget():
    ledger = LedgerView(target_error=0.15, window_start=DAY, window_requests=1000.0,
                        window_precision_sum=600.0)
    result = ForecastOptimal().decide(context(DAY + SLOT, [250.0] * 47, demand=[10.0] * 47, ledger=ledger))

    assert result.diagnostics["planIntensityThreshold"] is None


def test_horizon_ends_at_window_end():
    now = DAY + timedelta(hours=20)
    result = ForecastOptimal().decide(context(now, [100.0] * 96, demand=[10.0] * 96))

    assert result.diagnostics["horizonSlots"] == 8
    assert result.diagnostics["forecastSlots"] == 8


def test_short_forecast_is_filled_to_window_end():
    result = ForecastOptimal().decide(context(DAY, [100.0] * 10, demand=[10.0] * 10))

    assert result.diagnostics["horizonSlots"] == 48
    assert result.diagnostics["forecastSlots"] == 10


def test_mid_slot_evaluation_counts_remaining_part():
    now = DAY + timedelta(minutes=15)
    result = ForecastOptimal().decide(context(now, [100.0] * 48, demand=[10.0] * 48))

    assert result.diagnostics["horizonSlots"] == 48
    assert result.diagnostics["hedge"] == pytest.approx(0.001, rel=1e-6)


def test_overspent_window_serves_most_precise():
    ledger = LedgerView(target_error=0.15, window_start=DAY, window_requests=1000.0,
                        window_precision_sum=600.0)
    now = DAY + timedelta(hours=12)
    result = ForecastOptimal().decide(context(now, [250.0] * 24, demand=[10.0] * 24, ledger=ledger))

    assert result.shares["high"] == 1.0
    assert result.diagnostics["marginalPrice"] is None


def test_ledger_from_earlier_window_counts_nothing():
    stale = LedgerView(target_error=0.15, window_start=DAY - timedelta(days=1), window_requests=1000.0,
                       window_precision_sum=600.0)
    result = ForecastOptimal().decide(context(DAY, [120.0] * 48, demand=[10.0] * 48, ledger=stale))

    assert result.diagnostics["deliveredRequests"] == 0.0
    assert result.shares["low"] == 0.21


def test_demand_error_option_tightens_target():
    plain = ForecastOptimal().decide(context(DAY, [120.0] * 48, demand=[10.0] * 48))
    hedged = ForecastOptimal().decide(context(DAY, [120.0] * 48, demand=[10.0] * 48,
                                              options={"demandError": 0.2}))

    assert hedged.diagnostics["plannedTargetError"] == pytest.approx(0.15 - 0.001 - 0.2 * 0.55)
    assert hedged.shares["low"] < plain.shares["low"]


def test_unknown_demand_guesses_demand_error():
    result = ForecastOptimal().decide(context(DAY, [120.0] * 48))

    assert result.diagnostics["plannedTargetError"] == pytest.approx(0.15 - 0.001 - 0.1 * 0.55)


@pytest.mark.parametrize("value", ["lots", -0.1, 2])
def test_invalid_hedge_option_is_rejected(value):
    with pytest.raises(ValueError, match="invalid forecast-optimal option hedge"):
        ForecastOptimal().decide(context(DAY, [120.0] * 48, options={"hedge": value}))


def test_round_down_never_lowers_precision():
    generator = random.Random(7)
    hull = (FLAVOURS[0], FLAVOURS[2])
    for _ in range(200):
        low = generator.random()
        shares = {"high": 1 - low, "mid": 0.0, "low": low}
        rounded = round_down_downgrade(shares, hull)
        weights = integer_weights(rounded, ["high", "mid", "low"])

        assert rounded["low"] <= low
        assert low - rounded["low"] < 0.01 + 1e-12
        assert weights == {name: round(value * 100) for name, value in rounded.items()}
        assert math.isclose(sum(rounded.values()), 1.0)


def throttle_for(diagnostics: dict, *, now: float, after: float) -> float:
    floor, ceiling = plan_throttle_thresholds(diagnostics, floor=100.0, ceiling=250.0)
    return compute_throttle(balance=0.0, credit_min=-0.5, credit_max=0.5, intensity_now=now,
                            intensity_next=after, floor=floor, ceiling=ceiling, throttle_min=0.2).throttle


def test_throttle_stays_open_in_plan_clean_slot():
    intensities = [200.0] + [240.0] * 47
    result = ForecastOptimal().decide(context(DAY, intensities, demand=[10.0] * 48))

    assert result.diagnostics["planCleanSlot"] is True
    assert throttle_for(result.diagnostics, now=200.0, after=240.0) == 1.0
    # Without the plan's thresholds the same intensities would hold processing back.
    assert throttle_for({}, now=200.0, after=240.0) < 1.0


def test_throttle_follows_plan_threshold_in_dirty_slot():
    intensities = [40.0 + 5 * slot for slot in range(48)]
    intensities[0] = 250.0
    result = ForecastOptimal().decide(context(DAY, intensities, demand=[10.0] * 48))
    floor, ceiling = plan_throttle_thresholds(result.diagnostics, floor=100.0, ceiling=250.0)

    assert result.diagnostics["planCleanSlot"] is False
    assert floor == result.diagnostics["planIntensityThreshold"]
    assert ceiling - floor == 150.0
    assert throttle_for(result.diagnostics, now=250.0, after=250.0) < 1.0


def test_throttle_thresholds_ignore_other_diagnostics():
    assert plan_throttle_thresholds({"budgetAllowance": 0.2}, floor=100.0, ceiling=250.0) == (100.0, 250.0)


def test_hedge_shrinks_as_window_fills():
    early = ForecastOptimal().decide(context(DAY, [120.0] * 48, demand=[10.0] * 48,
                                             options={"demandError": 0.1}))
    ledger = LedgerView(target_error=0.15, window_start=DAY, window_requests=360.0,
                        window_precision_sum=306.0)
    late = ForecastOptimal().decide(context(DAY + 36 * SLOT, [120.0] * 12, demand=[10.0] * 12,
                                            ledger=ledger, options={"demandError": 0.1}))

    assert early.diagnostics["hedge"] == pytest.approx(0.001 + 0.1 * 0.55)
    # A quarter of the window's requests are still to come.
    assert late.diagnostics["hedge"] == pytest.approx(0.25 * (0.001 + 0.1 * 0.55))


def test_stale_snapshot_counts_as_no_forecast():
    now = DAY + timedelta(hours=3)
    stale = snapshot(DAY, [250.0] * 4)  # slots 00:00-02:00, all before now
    ctx = PolicyContext(flavours=FLAVOURS, carbon=stale, now=now, demand=(),
                        ledger=LedgerView(target_error=0.15))
    result = ForecastOptimal().decide(ctx)

    assert result.diagnostics["carbonBlind"] is True
    assert result.diagnostics["forecastSlots"] == 0
    assert result.diagnostics["horizonSlots"] == 42


def test_missing_demand_value_keeps_slot_alignment():
    demand = [10.0, float("nan"), 200.0] + [10.0] * 45
    ctx = context(DAY, [100.0] * 48, demand=demand)
    horizon = build_horizon(ctx, window_end=DAY + timedelta(days=1), delivered_requests=0.0)

    assert horizon.demand[2] == 200.0
    assert horizon.demand[1] == pytest.approx((10.0 * 46 + 200.0) / 47)
    assert horizon.demand_given is False
