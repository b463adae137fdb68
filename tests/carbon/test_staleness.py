"""Provider failure handling: last good forecast kept as stale, then unavailable after the limit."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from engine.carbon import build_source
from engine.carbon.base import parse_time
from engine.carbon.live import LiveSource
from tests.carbon.conftest import Reply, payload

NOW = parse_time("2023-03-22T12:40Z")
DAY = timedelta(hours=24)


def national(server, *, staleness_limit: float, cache_ttl: float = 0.0):
    settings = {"gb_base_url": server.url, "staleness_limit": staleness_limit}
    return build_source("national", timeout=2.0, cache_ttl=cache_ttl, settings=settings)


def test_failure_keeps_last_good_then_expires(provider_server):
    provider_server.route(
        "/intensity/",
        Reply(body=payload("gb-national-fw48h.json")),
        Reply(500, payload("gb-error-500.json")),
    )
    source = national(provider_server, staleness_limit=1.0)

    good = source.snapshot(NOW, horizon=DAY)
    assert good.available
    assert not good.stale

    kept = source.snapshot(NOW, horizon=DAY)
    assert len(provider_server.requests) == 2
    assert kept.available
    assert kept.stale
    assert kept.slots == good.slots
    assert "HTTP 500" in kept.message

    time.sleep(1.2)
    expired = source.snapshot(NOW, horizon=DAY)
    assert not expired.available
    assert expired.slots == ()
    assert "staleness limit of 1 s" in expired.message
    assert "HTTP 500" in expired.message


def test_recovery_clears_stale(provider_server):
    provider_server.route(
        "/intensity/",
        Reply(body=payload("gb-national-fw48h.json")),
        Reply(200, b"{}"),
        Reply(body=payload("gb-national-fw48h.json")),
    )
    source = national(provider_server, staleness_limit=600.0)
    assert not source.snapshot(NOW, horizon=DAY).stale
    assert source.snapshot(NOW, horizon=DAY).stale
    recovered = source.snapshot(NOW, horizon=DAY)
    assert recovered.available
    assert not recovered.stale
    assert recovered.message == ""


def test_forecast_ending_before_now_is_unavailable(provider_server):
    provider_server.route("/intensity/", Reply(body=payload("gb-national-fw48h.json")))
    source = national(provider_server, staleness_limit=600.0, cache_ttl=600.0)
    assert source.snapshot(NOW, horizon=DAY).available
    later = source.snapshot(NOW + timedelta(hours=49), horizon=DAY)
    assert not later.available
    assert "ends at 2023-03-24T12:30Z" in later.message


def test_failed_provider_is_not_called_on_every_request(provider_server):
    provider_server.route("/intensity/", Reply(500, payload("gb-error-500.json")))
    source = national(provider_server, staleness_limit=600.0, cache_ttl=300.0)
    for _ in range(5):
        snapshot = source.snapshot(NOW, horizon=DAY)
        assert not snapshot.available
    assert len(provider_server.requests) == 1


class BrokenParserSource(LiveSource):
    """A provider whose parser has a bug: fetch raises something other than ProviderError."""

    def fetch(self, now):
        raise KeyError("intensity")


def test_unexpected_fetch_error_never_raises():
    source = BrokenParserSource(name="broken", timeout=1.0, cache_ttl=0.0, staleness_limit=60.0)
    try:
        snapshot = source.snapshot(NOW, horizon=DAY)
        assert not snapshot.available
        assert snapshot.source == "broken"
        assert "unexpected error: KeyError('intensity')" in snapshot.message
    finally:
        source.close()


def test_concurrent_requests_share_one_slow_refresh(provider_server):
    provider_server.route("/intensity/", Reply(body=payload("gb-national-fw48h.json"), delay=1.5))
    source = build_source(
        "national", timeout=0.3, cache_ttl=300.0, settings={"gb_base_url": provider_server.url}
    )
    durations: list[float] = []
    results = []

    def request() -> None:
        started = time.monotonic()
        results.append(source.snapshot(NOW, horizon=DAY))
        durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 20
    assert max(durations) < 1.0
    assert len(provider_server.requests) == 1
    assert all(not r.available for r in results)
