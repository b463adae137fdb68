"""Credit ledger: deltas, clamping, velocity, quality windows and state round-trip."""

from datetime import UTC, datetime, timedelta

import pytest

from engine.ledger import CreditLedger, window_start_for

NOW = datetime(2026, 12, 4, 20, 15, tzinfo=UTC)


def make_ledger(**kwargs) -> CreditLedger:
    options = {"target_error": 0.1, "credit_min": -0.5, "credit_max": 0.5}
    options.update(kwargs)
    return CreditLedger(**options)


def test_record_adds_target_minus_realised_error():
    ledger = make_ledger()
    # 100 requests at mean precision 0.8: realised error 0.2, delta 0.1 - 0.2 = -0.1.
    balance = ledger.record(now=NOW, requests=100, precision_sum=80)
    assert balance == pytest.approx(-0.1)
    assert ledger.velocity == pytest.approx(-0.1)


def test_record_scales_by_sensitivity():
    ledger = make_ledger(sensitivity=2.0)
    assert ledger.record(now=NOW, requests=10, precision_sum=10) == pytest.approx(0.2)


def test_balance_clamped_to_bounds():
    ledger = make_ledger(credit_min=-0.2, credit_max=0.3)
    for _ in range(10):
        ledger.record(now=NOW, requests=10, precision_sum=10)
    assert ledger.balance == pytest.approx(0.3)
    for _ in range(10):
        ledger.record(now=NOW, requests=10, precision_sum=0)
    assert ledger.balance == pytest.approx(-0.2)


def test_velocity_is_mean_of_recent_deltas():
    ledger = make_ledger(history=2)
    ledger.record(now=NOW, requests=1, precision_sum=1.0)  # +0.1
    ledger.record(now=NOW, requests=1, precision_sum=0.5)  # -0.4
    ledger.record(now=NOW, requests=1, precision_sum=0.9)  # 0.0
    assert ledger.velocity == pytest.approx((-0.4 + 0.0) / 2)


def test_zero_requests_change_nothing():
    ledger = make_ledger()
    assert ledger.record(now=NOW, requests=0, precision_sum=0) == 0.0
    assert ledger.updated_at is None


def test_window_counts_reset_at_epoch_aligned_boundary():
    ledger = make_ledger(window=timedelta(hours=24))
    ledger.record(now=NOW, requests=10, precision_sum=9)
    view = ledger.view()
    assert view.window_start == datetime(2026, 12, 4, tzinfo=UTC)
    assert view.window_requests == 10
    assert view.window_precision_sum == pytest.approx(9)

    next_day = ledger.view(NOW + timedelta(hours=4))
    assert next_day.window_start == datetime(2026, 12, 5, tzinfo=UTC)
    assert next_day.window_requests == 0
    assert next_day.balance == pytest.approx(0.0)


def test_window_start_for_aligns_short_windows():
    start = window_start_for(NOW, timedelta(minutes=5))
    assert start == datetime(2026, 12, 4, 20, 15, tzinfo=UTC)
    assert window_start_for(NOW + timedelta(minutes=4, seconds=59), timedelta(minutes=5)) == start


def test_state_round_trip_restores_everything():
    ledger = make_ledger()
    ledger.record(now=NOW, requests=10, precision_sum=9.5)
    ledger.record(now=NOW, requests=10, precision_sum=7.0)
    restored = make_ledger()
    restored.from_state(ledger.to_state())
    assert restored.balance == pytest.approx(ledger.balance)
    assert restored.velocity == pytest.approx(ledger.velocity)
    assert restored.updated_at == NOW
    assert restored.view().window_requests == 20
    restored.record(now=NOW, requests=10, precision_sum=10)
    ledger.record(now=NOW, requests=10, precision_sum=10)
    assert restored.velocity == pytest.approx(ledger.velocity)


def test_from_state_clamps_into_new_band():
    ledger = make_ledger(credit_max=0.2)
    ledger.from_state({"balance": 0.9, "velocity": 0.0})
    assert ledger.balance == pytest.approx(0.2)


def test_from_state_rejects_non_numbers_without_change():
    ledger = make_ledger()
    ledger.record(now=NOW, requests=10, precision_sum=10)
    with pytest.raises(ValueError):
        ledger.from_state({"balance": "lots"})
    assert ledger.balance == pytest.approx(0.1)


def test_ledger_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="credit_min"):
        make_ledger(credit_min=0.5, credit_max=0.1)
