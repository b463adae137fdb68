"""Trace replay: clock mapping, no peeking at future actuals, operator forecasts, extension, CSV checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.carbon import build_source
from engine.carbon.base import parse_time
from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST, TraceSource, load_trace
from engine.model import SLOT

WALL = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


_opened: list[TraceSource] = []


@pytest.fixture(autouse=True)
def _close_replays():
    """Stop each test's forecast worker, so its background fits do not run into later tests."""
    yield
    while _opened:
        _opened.pop().close()


def replay(start: str, *, speedup: float = 1.0, wait: float = 0.0) -> TraceSource:
    trace = load_trace(DEFAULT_ACTUAL, DEFAULT_FORECAST)
    source = TraceSource(
        trace, start=parse_time(start), speedup=speedup, forecast_wait=wait, replay_started_at=WALL
    )
    _opened.append(source)
    return source


def test_default_target_is_bundled_gb_trace():
    for target in ("", "trace", " trace "):
        source = build_source(target, timeout=1.0, cache_ttl=60.0)
        assert source.name == "trace:gb-national-2023-03"
        assert source.time_scale == 1.0
        assert source.source_now(datetime.now(UTC)) >= datetime(2023, 3, 21, tzinfo=UTC)


def test_build_source_shares_instance_for_same_arguments():
    first = build_source("trace", timeout=1.0, cache_ttl=60.0, settings={"trace_speedup": "60"})
    again = build_source("trace", timeout=1.0, cache_ttl=60.0, settings={"trace_speedup": "60"})
    other = build_source("trace", timeout=1.0, cache_ttl=60.0, settings={"trace_speedup": "30"})
    assert first is again
    assert other is not first
    assert other.time_scale == 30.0


def test_unknown_target_lists_valid_forms():
    with pytest.raises(ValueError) as caught:
        build_source("mars:olympus", timeout=1.0, cache_ttl=60.0)
    assert "mars:olympus" in str(caught.value)
    assert "trace:<actual.csv>" in str(caught.value)


def test_source_clock_follows_speedup():
    source = replay("2023-03-22T00:00Z", speedup=60.0)
    assert source.source_now(WALL) == parse_time("2023-03-22T00:00Z")
    assert source.source_now(WALL + timedelta(seconds=30)) == parse_time("2023-03-22T00:30Z")
    assert source.to_wall(parse_time("2023-03-22T01:00Z"), wall_now=WALL) == WALL + timedelta(seconds=60)


def test_source_clock_wraps_at_trace_end():
    source = replay("2023-03-29T23:00Z")
    assert source.source_now(WALL + timedelta(minutes=59)) == parse_time("2023-03-29T23:59Z")
    assert source.source_now(WALL + timedelta(minutes=75)) == parse_time("2023-03-21T00:15Z")


def test_current_slot_is_actual(bundled_actuals):
    source = replay("2023-03-24T10:10Z")
    snapshot = source.snapshot(WALL, horizon=DAY)
    assert snapshot.available
    assert snapshot.now == parse_time("2023-03-24T10:10Z")
    assert snapshot.slots[0].start == parse_time("2023-03-24T10:00Z")
    assert snapshot.slots[0].actual
    assert snapshot.current == bundled_actuals[parse_time("2023-03-24T10:00Z")]


def test_future_slots_come_from_latest_issued_forecast(bundled_forecasts):
    source = replay("2023-03-22T12:45Z")
    snapshot = source.snapshot(WALL, horizon=DAY)
    issued = bundled_forecasts[parse_time("2023-03-22T12:31Z")]
    assert len(snapshot.slots) == 49
    assert all(not slot.actual for slot in snapshot.slots[1:])
    for slot in snapshot.slots[1:]:
        assert slot.intensity == issued[slot.start]
    assert "2023-03-22T12:31Z" in snapshot.message


def test_forecast_issued_later_is_not_used(bundled_forecasts):
    # At 12:20 the 12:31 snapshot does not exist yet; the 01:31 one must be used.
    source = replay("2023-03-22T12:20Z")
    snapshot = source.snapshot(WALL, horizon=timedelta(hours=6))
    night = bundled_forecasts[parse_time("2023-03-22T01:31Z")]
    assert [s.intensity for s in snapshot.slots[1:]] == [night[s.start] for s in snapshot.slots[1:]]
    assert "2023-03-22T01:31Z" in snapshot.message


def test_slots_are_contiguous_half_hours():
    snapshot = replay("2023-03-25T05:00Z").snapshot(WALL, horizon=timedelta(hours=30))
    assert len(snapshot.slots) == 60
    for earlier, later in zip(snapshot.slots, snapshot.slots[1:], strict=False):
        assert later.start == earlier.end
        assert later.end - later.start == SLOT


def test_short_operator_forecast_is_extended_by_model():
    # The 2023-03-25T01:31Z snapshot has 35 slots, so a 24 h horizon at 02:00 needs the model.
    source = replay("2023-03-25T02:00Z", wait=60.0)
    snapshot = source.snapshot(WALL, horizon=DAY)
    assert len(snapshot.slots) == 48
    assert "holt-winters" in snapshot.message
    assert all(40 / 4 < slot.intensity < 250 * 2 for slot in snapshot.slots)


def test_extension_before_fit_is_seasonal_naive(bundled_actuals):
    source = replay("2023-03-21T02:00Z")  # no operator forecast yet, 5 slots of history
    snapshot = source.snapshot(WALL, horizon=timedelta(hours=2))
    assert len(snapshot.slots) == 4
    assert "naive" in snapshot.message
    assert all(s.intensity == bundled_actuals[parse_time("2023-03-21T02:00Z")] for s in snapshot.slots)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_trace_gaps_are_interpolated(tmp_path):
    actual = write(
        tmp_path / "x-actual.csv",
        "from,actual\n2024-01-01T00:00Z,100\n2024-01-01T00:30Z,\n2024-01-01T01:30Z,160\n",
    )
    trace = load_trace(actual, None)
    assert trace.name == "x"
    assert trace.actuals == (100.0, 120.0, 140.0, 160.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("when,actual\n2024-01-01T00:00Z,1\n", "missing columns"),
        ("from,actual\nyesterday,1\n2024-01-01T00:30Z,1\n", "invalid time 'yesterday'"),
        ("from,actual\n2024-01-01T00:10Z,1\n2024-01-01T00:30Z,1\n", "not the start of a half-hour slot"),
        ("from,actual\n2024-01-01T00:00Z,-5\n2024-01-01T00:30Z,1\n", "invalid intensity '-5'"),
        ("from,actual\n2024-01-01T00:00Z,1\n2024-01-01T00:00Z,2\n", "duplicate slot"),
        ("from,actual\n2024-01-01T00:00Z,1\n", "at least 2 slots"),
    ],
)
def test_invalid_trace_file_names_problem(tmp_path, text, expected):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=expected):
        load_trace(path, None)


def test_missing_trace_file_is_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read carbon trace file"):
        build_source(f"trace:{tmp_path / 'absent.csv'}", timeout=1.0, cache_ttl=60.0,
                     settings={"trace_dir": str(tmp_path)})


def test_custom_trace_target_and_settings(tmp_path):
    actual = write(tmp_path / "mine-actual.csv", "from,actual\n2024-01-01T00:00Z,100\n2024-01-01T00:30Z,90\n")
    source = build_source(f"trace:{actual}", timeout=1.0, cache_ttl=60.0,
                          settings={"trace_dir": str(tmp_path)})
    assert source.name == "trace:mine"
    with pytest.raises(ValueError, match="trace_start"):
        build_source("trace", timeout=1.0, cache_ttl=60.0, settings={"trace_start": "soon"})
    with pytest.raises(ValueError, match="trace_speedup"):
        build_source("trace", timeout=1.0, cache_ttl=60.0, settings={"trace_speedup": "fast"})
    with pytest.raises(ValueError, match="outside the trace"):
        build_source("trace", timeout=1.0, cache_ttl=60.0, settings={"trace_start": "2020-01-01T00:00Z"})


def test_trace_forecast_setting_needs_actual():
    with pytest.raises(ValueError, match="CARBON_TRACE_ACTUAL"):
        build_source("trace", timeout=1.0, cache_ttl=60.0, settings={"trace_forecast": "/tmp/forecast.csv"})


def test_custom_trace_with_forecast_file(tmp_path):
    actual = write(
        tmp_path / "site-actual.csv",
        "from,actual\n2024-01-01T00:00Z,100\n2024-01-01T00:30Z,90\n2024-01-01T01:00Z,80\n",
    )
    forecast = write(
        tmp_path / "site-forecast.csv",
        "issued_at,from,forecast\n2024-01-01T00:01Z,2024-01-01T00:30Z,95\n2024-01-01T00:01Z,2024-01-01T01:00Z,85\n",
    )
    source = build_source(
        f"trace:{actual}, {forecast}",
        timeout=1.0,
        cache_ttl=60.0,
        settings={"trace_start": "2024-01-01T00:10Z", "trace_dir": str(tmp_path)},
    )
    snapshot = source.snapshot(source.replay_started_at, horizon=timedelta(hours=1))
    assert source.name == "trace:site"
    assert [s.intensity for s in snapshot.slots] == [100.0, 95.0, 85.0]
    assert [s.actual for s in snapshot.slots] == [True, False, False]
    assert "operator forecast issued 2024-01-01T00:01Z" in snapshot.message
