"""Shared carbon helpers: time parsing, slot arithmetic, resampling and environment settings."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.carbon import settings_from_env
from engine.carbon.base import Reading, parse_time, resample_to_slots, slot_start, slots_needed
from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST, TraceSource, load_trace


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-03-14T03:30Z", datetime(2023, 3, 14, 3, 30, tzinfo=UTC)),
        ("2023-03-14T03:30:00+00:00", datetime(2023, 3, 14, 3, 30, tzinfo=UTC)),
        ("2023-03-14T04:30:00.000+01:00", datetime(2023, 3, 14, 3, 30, tzinfo=UTC)),
        ("2023-03-14T03:30", datetime(2023, 3, 14, 3, 30, tzinfo=UTC)),
        ("2023-03-14T03:30:00.000Z", datetime(2023, 3, 14, 3, 30, tzinfo=UTC)),
    ],
)
def test_parse_time_accepts_api_forms(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "soon", "2023-13-01T00:00Z", None, 1678764600])
def test_parse_time_rejects_garbage(text):
    assert parse_time(text) is None


def test_slot_arithmetic():
    moment = datetime(2023, 3, 14, 3, 47, 12, tzinfo=timezone(timedelta(hours=1)))
    assert slot_start(moment) == datetime(2023, 3, 14, 2, 30, tzinfo=UTC)
    assert slots_needed(datetime(2023, 3, 14, 3, 30, tzinfo=UTC), timedelta(hours=24)) == 48
    assert slots_needed(datetime(2023, 3, 14, 3, 40, tzinfo=UTC), timedelta(hours=24)) == 49
    assert slots_needed(datetime(2023, 3, 14, 3, 40, tzinfo=UTC), timedelta(0)) == 1


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2023, 3, 14, hour, minute, tzinfo=UTC)


def test_resample_hourly_fills_both_halves():
    slots = resample_to_slots([Reading(at(3), at(4), 200.0), Reading(at(4), at(5), 100.0, actual=True)])
    assert [s.start for s in slots.values()] == [at(3), at(3, 30), at(4), at(4, 30)]
    assert [s.intensity for s in slots.values()] == [200.0, 200.0, 100.0, 100.0]
    assert [s.actual for s in slots.values()] == [False, False, True, True]


def test_resample_averages_short_readings_by_overlap():
    readings = [Reading(at(3, 5 * i), at(3, 5 * i + 5), 10.0 * i) for i in range(6)]
    readings.append(Reading(at(3, 30), at(3, 40), 90.0))
    slots = resample_to_slots(readings)
    assert slots[at(3)].intensity == pytest.approx(25.0)
    assert slots[at(3, 30)].intensity == 90.0
    assert slots[at(3, 30)].end == at(4)


def test_resample_skips_empty_readings():
    assert resample_to_slots([Reading(at(3), at(3), 5.0), Reading(at(4), at(3), 5.0)]) == {}


def test_settings_from_env_reads_known_names_only():
    env = {
        "CARBON_TRACE_SPEEDUP": "60",
        "CARBON_TRACE_START": "",
        "ELECTRICITYMAPS_TOKEN": "k",
        "CARBON_AWARE_SDK_BASE_URL": "http://127.0.0.1:8080",
        "HOME": "/root",
    }
    assert settings_from_env(env) == {
        "trace_speedup": "60",
        "electricitymaps_token": "k",
        "carbon_aware_sdk_base_url": "http://127.0.0.1:8080",
    }


def test_trace_wrap_is_logged(caplog):
    wall = datetime(2026, 12, 4, tzinfo=UTC)
    source = TraceSource(
        load_trace(DEFAULT_ACTUAL, DEFAULT_FORECAST),
        start=parse_time("2023-03-29T23:30Z"),
        speedup=60.0,
        replay_started_at=wall,
    )
    try:
        with caplog.at_level(logging.INFO, logger="engine.carbon.trace"):
            snapshot = source.snapshot(wall + timedelta(seconds=40), horizon=timedelta(hours=1))
        assert snapshot.now == parse_time("2023-03-21T00:10Z")
        assert snapshot.time_scale == 60.0
        assert any(
            "wrapped to its first slot" in r.getMessage() and "lap=1" in r.getMessage()
            for r in caplog.records
        )
    finally:
        source.close()


def test_trace_snapshot_accepts_naive_wall_time():
    source = TraceSource(
        load_trace(DEFAULT_ACTUAL, None),
        start=parse_time("2023-03-24T00:00Z"),
        replay_started_at=datetime(2026, 12, 4, tzinfo=UTC),
    )
    try:
        snapshot = source.snapshot(datetime(2026, 12, 4, 1, 0), horizon=timedelta(hours=2))
        assert snapshot.available
        assert snapshot.now == parse_time("2023-03-24T01:00Z")
        assert len(snapshot.slots) == 4
    finally:
        source.close()
