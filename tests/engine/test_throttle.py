"""Processing throttle and replica ceilings."""

import pytest

from engine.throttle import compute_throttle, replica_ceilings
from engine.validation import ComponentBounds

BAND = {"credit_min": -0.5, "credit_max": 0.5, "floor": 100.0, "ceiling": 250.0, "throttle_min": 0.2}


def test_throttle_full_at_floor_without_credit():
    result = compute_throttle(balance=-0.5, intensity_now=100.0, intensity_next=80.0, **BAND)
    assert result.throttle == 1.0
    assert result.credits_ratio == 0.0


def test_throttle_is_min_of_credit_and_intensity_ratios():
    # worse intensity 175: (250 - 175) / 150 = 0.5; balance 0.3: (0.3 + 0.5) / 1.0 = 0.8.
    result = compute_throttle(balance=0.3, intensity_now=150.0, intensity_next=175.0, **BAND)
    assert result.intensity_ratio == pytest.approx(0.5)
    assert result.credits_ratio == pytest.approx(0.8)
    assert result.throttle == pytest.approx(0.5)


def test_throttle_uses_worse_of_now_and_next():
    rising = compute_throttle(balance=0.5, intensity_now=120.0, intensity_next=220.0, **BAND)
    assert rising.intensity_ratio == pytest.approx(0.2)


def test_throttle_never_below_minimum():
    result = compute_throttle(balance=-0.5, intensity_now=400.0, intensity_next=400.0, **BAND)
    assert result.throttle == pytest.approx(0.2)


def test_throttle_is_one_without_carbon_data():
    result = compute_throttle(balance=-0.5, intensity_now=None, intensity_next=None, **BAND)
    assert result.throttle == 1.0


def test_ceilings_floor_scaled_max_and_exempt_router():
    bounds = {"router": ComponentBounds(1, 5), "consumer": ComponentBounds(1, 5),
              "target": ComponentBounds(2, 10)}
    ceilings = replica_ceilings(bounds, throttle=0.3)
    assert ceilings == {"router": 5, "consumer": 1, "target": 3}
    assert all(isinstance(value, int) for value in ceilings.values())


@pytest.mark.parametrize("throttle", [0.0, 0.05, 0.2, 0.55, 0.99, 1.0])
def test_ceilings_never_below_min_nor_above_max(throttle):
    bounds = {"consumer": ComponentBounds(2, 7), "target": ComponentBounds(0, 3)}
    ceilings = replica_ceilings(bounds, throttle=throttle)
    for component, bound in bounds.items():
        assert bound.min <= ceilings[component] <= bound.max


def test_full_throttle_gives_max():
    assert replica_ceilings({"target": ComponentBounds(1, 10)}, throttle=1.0) == {"target": 10}
