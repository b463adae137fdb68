"""Rounding of policy shares into integer percentages."""

import math

import pytest

from engine.policies import integer_weights


@pytest.mark.parametrize(
    "shares",
    [
        {"high": 1 / 3, "mid": 1 / 3, "low": 1 / 3},
        {"high": 0.005, "mid": 0.005, "low": 0.99},
        {"high": 7.0, "mid": 0.0, "low": 2.5},
    ],
)
def test_integer_weights_sum_to_100(shares):
    weights = integer_weights(shares, ["high", "mid", "low"])
    assert sum(weights.values()) == 100
    assert all(isinstance(value, int) for value in weights.values())


def test_integer_weights_skip_disabled():
    weights = integer_weights({"high": 0.2, "mid": 0.5, "low": 0.3}, ["high", "low"])
    assert set(weights) == {"high", "low"}
    assert weights == {"high": 40, "low": 60}


def test_integer_weights_all_zero_go_to_first():
    weights = integer_weights({"high": 0.0, "mid": math.nan}, ["high", "mid"])
    assert weights == {"high": 100, "mid": 0}


def test_integer_weights_ties_favour_precise():
    weights = integer_weights({"high": 1, "mid": 1, "low": 1}, ["high", "mid", "low"])
    assert weights == {"high": 34, "mid": 33, "low": 33}
