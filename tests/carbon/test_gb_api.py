"""GB Carbon Intensity API source against recorded payloads served on 127.0.0.1."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from engine.carbon import build_source
from engine.carbon.base import parse_time
from engine.model import SLOT
from tests.carbon.conftest import Reply, payload

NOW = parse_time("2023-03-22T12:40Z")
DAY = timedelta(hours=24)


def gb_source(server, target="national", *, timeout=2.0, cache_ttl=300.0, **settings):
    return build_source(
        target, timeout=timeout, cache_ttl=cache_ttl, settings={"gb_base_url": server.url, **settings}
    )


def test_national_forecast_slots(provider_server, bundled_actuals, bundled_forecasts):
    provider_server.route("/intensity/", Reply(body=payload("gb-national-fw48h.json")))
    snapshot = gb_source(provider_server).snapshot(NOW, horizon=DAY)
    issued = bundled_forecasts[parse_time("2023-03-22T12:31Z")]
    assert provider_server.paths() == ["/intensity/2023-03-22T12:40Z/fw48h"]
    assert snapshot.available
    assert not snapshot.stale
    assert snapshot.source == "carbonintensity.org.uk:national"
    assert len(snapshot.slots) == 49
    assert snapshot.slots[0].start == parse_time("2023-03-22T12:30Z")
    assert snapshot.slots[0].actual
    assert snapshot.current == bundled_actuals[parse_time("2023-03-22T12:30Z")]
    assert [s.intensity for s in snapshot.slots[1:]] == [issued[s.start] for s in snapshot.slots[1:]]
    assert snapshot.index == "low"


def test_regional_forecast_slots(provider_server, bundled_forecasts):
    provider_server.route("/regional/", Reply(body=payload("gb-regional-fw48h.json")))
    now = parse_time("2023-03-26T12:40Z")
    snapshot = gb_source(provider_server, "region:13").snapshot(now, horizon=DAY)
    issued = bundled_forecasts[parse_time("2023-03-26T12:31Z")]
    assert provider_server.paths() == ["/regional/intensity/2023-03-26T12:40Z/fw48h/regionid/13"]
    assert snapshot.source == "carbonintensity.org.uk:region:13"
    assert snapshot.available
    assert [s.intensity for s in snapshot.slots] == [issued[s.start] for s in snapshot.slots]
    assert not snapshot.slots[0].actual


def test_regional_list_wrapped_and_postcode(provider_server, bundled_forecasts):
    provider_server.route("/regional/", Reply(body=payload("gb-regional-list-wrapped.json")))
    now = parse_time("2023-03-26T12:40Z")
    snapshot = gb_source(provider_server, "postcode:rg10 1ab").snapshot(now, horizon=DAY)
    assert provider_server.paths() == ["/regional/intensity/2023-03-26T12:40Z/fw48h/postcode/RG10"]
    assert snapshot.source == "carbonintensity.org.uk:postcode:RG10"
    assert (
        snapshot.current
        == bundled_forecasts[parse_time("2023-03-26T12:31Z")][parse_time("2023-03-26T12:30Z")]
    )


@pytest.mark.parametrize(
    ("target", "reply", "expected"),
    [
        ("national", Reply(200, b"{}"), "has no 'data' list"),
        ("national", Reply(500, payload("gb-error-500.json")), "HTTP 500: Internal server error"),
        ("national", Reply(200, payload("gb-empty-data.json")), "empty 'data' list"),
        ("region:13", Reply(200, payload("gb-regional-empty-inner.json")), "empty 'data' list"),
        ("region:13", Reply(200, b'{"data": []}'), "no 'data' object"),
        ("national", Reply(200, b"<html>busy</html>"), "not JSON"),
        (
            "national",
            Reply(200, b'{"data": [{"from": null, "intensity": {"forecast": null}}]}'),
            "none of the 1 slots",
        ),
    ],
)
def test_unusable_body_is_no_usable_forecast(provider_server, target, reply, expected):
    provider_server.route("/", reply)
    snapshot = gb_source(provider_server, target).snapshot(NOW, horizon=DAY)
    assert not snapshot.available
    assert snapshot.slots == ()
    assert snapshot.current is None
    assert "no usable forecast" in snapshot.message
    assert expected in snapshot.message


def test_nulls_and_gaps_are_interpolated(provider_server):
    provider_server.route("/intensity/", Reply(body=payload("gb-national-nulls-gaps.json")))
    snapshot = gb_source(provider_server).snapshot(NOW, horizon=DAY)
    entries = json.loads(payload("gb-national-fw48h.json"))["data"]
    values = [e["intensity"]["forecast"] for e in entries]
    assert snapshot.available
    assert len(snapshot.slots) == 49
    for earlier, later in zip(snapshot.slots, snapshot.slots[1:], strict=False):
        assert later.start == earlier.end
    # Slots 3 and 4 (nulls) lie on the line between slots 2 and 5.
    step = (values[5] - values[2]) / 3
    assert snapshot.slots[3].intensity == pytest.approx(values[2] + step)
    assert snapshot.slots[4].intensity == pytest.approx(values[2] + 2 * step)
    assert snapshot.slots[9].intensity == values[9]
    assert snapshot.slots[13].intensity == values[13]
    assert "6 missing slots interpolated" in snapshot.message


def test_timeout_bounds_request_path(provider_server):
    provider_server.route("/intensity/", Reply(body=payload("gb-national-fw48h.json"), delay=3.0))
    source = gb_source(provider_server, timeout=0.3)
    started = time.monotonic()
    snapshot = source.snapshot(NOW, horizon=DAY)
    assert time.monotonic() - started < 1.0
    assert not snapshot.available
    deadline = time.monotonic() + 5.0
    while "timed out" not in snapshot.message and time.monotonic() < deadline:
        time.sleep(0.1)
        snapshot = source.snapshot(NOW, horizon=DAY)
    assert "timed out after 0.3 s" in snapshot.message


def test_cache_ttl_avoids_repeat_calls(provider_server):
    provider_server.route("/intensity/", Reply(body=payload("gb-national-fw48h.json")))
    source = gb_source(provider_server, cache_ttl=300.0)
    first = source.snapshot(NOW, horizon=DAY)
    second = source.snapshot(NOW + SLOT, horizon=DAY)
    assert len(provider_server.requests) == 1
    assert second.slots[0].start == first.slots[1].start


def test_horizon_beyond_48h_is_extended_by_model(provider_server):
    provider_server.route("/intensity/", Reply(body=payload("gb-national-fw48h.json")))
    source = gb_source(provider_server, forecast_wait=60)
    snapshot = source.snapshot(NOW, horizon=timedelta(hours=60))
    assert len(snapshot.slots) == 121
    assert "25 slots from holt-winters" in snapshot.message
    assert all(0 <= s.intensity < 1000 for s in snapshot.slots)
    assert snapshot.slots[-1].end == parse_time("2023-03-25T01:00Z")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("region:99", "invalid GB region id"),
        ("region:", "unknown carbonTarget"),
        ("postcode:12345", "invalid postcode"),
        ("national:13", "unknown carbonTarget"),
    ],
)
def test_invalid_gb_target_is_rejected(target, expected):
    with pytest.raises(ValueError, match=expected):
        build_source(target, timeout=1.0, cache_ttl=60.0)


def test_invalid_timing_arguments_are_rejected():
    with pytest.raises(ValueError, match="carbonTimeout"):
        build_source("national", timeout=0, cache_ttl=60.0)
    with pytest.raises(ValueError, match="carbonCacheTTL"):
        build_source("national", timeout=1.0, cache_ttl=-1)
    with pytest.raises(ValueError, match="invalid carbonTimeout 'soon'"):
        build_source("national", timeout="soon", cache_ttl=60.0)
    with pytest.raises(ValueError, match="invalid carbonCacheTTL None"):
        build_source("trace", timeout=1.0, cache_ttl=None)
    assert build_source("national", timeout="2", cache_ttl="60").timeout == 2.0
    with pytest.raises(ValueError, match="gb_base_url"):
        build_source("national", timeout=1.0, cache_ttl=60.0, settings={"gb_base_url": "ftp://x"})
