"""Electricity Maps, WattTime and Carbon Aware SDK sources against recorded payloads on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.carbon import build_source
from engine.carbon.base import parse_time
from engine.model import SLOT
from tests.carbon.conftest import Reply, payload

DAY = timedelta(hours=24)


def electricitymaps(server):
    settings = {"electricitymaps_base_url": server.url, "electricitymaps_token": "recorded-key"}
    return build_source("electricitymaps:DE", timeout=2.0, cache_ttl=300.0, settings=settings)


def test_electricitymaps_hourly_forecast_fills_half_hours(provider_server, bundled_forecasts):
    provider_server.route(
        "/v3/carbon-intensity/forecast", Reply(body=payload("electricitymaps-forecast.json"))
    )
    snapshot = electricitymaps(provider_server).snapshot(
        parse_time("2023-03-22T13:10Z"), horizon=timedelta(hours=6)
    )
    issued = bundled_forecasts[parse_time("2023-03-22T12:31Z")]
    path, headers = provider_server.requests[0]
    assert path == "/v3/carbon-intensity/forecast?zone=DE"
    assert headers["auth-token"] == "recorded-key"
    assert snapshot.source == "electricitymaps:DE"
    assert len(snapshot.slots) == 13
    for slot in snapshot.slots:
        hour = slot.start.replace(minute=0)
        assert slot.intensity == issued[hour]


def test_electricitymaps_latest_fills_current_slot(provider_server, bundled_actuals):
    provider_server.route(
        "/v3/carbon-intensity/forecast", Reply(body=payload("electricitymaps-forecast.json"))
    )
    provider_server.route("/v3/carbon-intensity/latest", Reply(body=payload("electricitymaps-latest.json")))
    snapshot = electricitymaps(provider_server).snapshot(parse_time("2023-03-22T12:40Z"), horizon=DAY)
    assert provider_server.paths()[1] == "/v3/carbon-intensity/latest?zone=DE"
    assert snapshot.slots[0].actual
    assert snapshot.current == bundled_actuals[parse_time("2023-03-22T12:30Z")]
    assert snapshot.slots[1].start == parse_time("2023-03-22T13:00Z")


def test_electricitymaps_rejected_key_is_unavailable(provider_server):
    provider_server.route("/v3/", Reply(401, payload("electricitymaps-error-401.json")))
    snapshot = electricitymaps(provider_server).snapshot(parse_time("2023-03-22T12:40Z"), horizon=DAY)
    assert not snapshot.available
    assert "HTTP 401: Invalid auth-token" in snapshot.message


def watttime(server):
    settings = {"watttime_base_url": server.url, "watttime_username": "user", "watttime_password": "secret"}
    return build_source("watttime:CAISO_NORTH", timeout=2.0, cache_ttl=0.0, settings=settings)


def test_watttime_converts_lbs_per_mwh(provider_server, bundled_forecasts):
    provider_server.route("/login", Reply(body=payload("watttime-login.json")))
    provider_server.route("/v3/forecast", Reply(body=payload("watttime-forecast.json")))
    snapshot = watttime(provider_server).snapshot(
        parse_time("2023-03-22T12:40Z"), horizon=timedelta(hours=12)
    )
    issued = bundled_forecasts[parse_time("2023-03-22T12:31Z")]
    login_headers = provider_server.requests[0][1]
    forecast_path, forecast_headers = provider_server.requests[1]
    assert login_headers["Authorization"].startswith("Basic ")
    assert forecast_path == "/v3/forecast?region=CAISO_NORTH&signal_type=co2_moer"
    assert forecast_headers["Authorization"] == "Bearer recorded-test-token"
    assert snapshot.source == "watttime:CAISO_NORTH"
    assert len(snapshot.slots) == 25
    for slot in snapshot.slots:
        assert slot.intensity == pytest.approx(issued[slot.start], abs=0.1)


def test_watttime_logs_in_again_after_401(provider_server):
    provider_server.route("/login", Reply(body=payload("watttime-login.json")))
    provider_server.route(
        "/v3/forecast",
        Reply(body=payload("watttime-forecast.json")),
        Reply(401, b'{"error": "token expired"}'),
        Reply(body=payload("watttime-forecast.json")),
    )
    source = watttime(provider_server)
    assert source.snapshot(parse_time("2023-03-22T12:40Z"), horizon=DAY).available
    again = source.snapshot(parse_time("2023-03-22T12:40Z"), horizon=DAY)
    assert again.available
    assert not again.stale
    assert [p.split("?")[0] for p in provider_server.paths()] == [
        "/login",
        "/v3/forecast",
        "/v3/forecast",
        "/login",
        "/v3/forecast",
    ]


def test_watttime_failed_login_is_unavailable(provider_server):
    provider_server.route("/login", Reply(403, b'{"error": "invalid credentials"}'))
    snapshot = watttime(provider_server).snapshot(parse_time("2023-03-22T12:40Z"), horizon=DAY)
    assert not snapshot.available
    assert "WattTime login failed: HTTP 403: invalid credentials" in snapshot.message


def carbon_aware(server, location="eastus"):
    return build_source(
        f"carbon-aware-sdk:{location}",
        timeout=2.0,
        cache_ttl=300.0,
        settings={"carbon_aware_sdk_base_url": server.url},
    )


def test_carbon_aware_sdk_forecast(provider_server, bundled_forecasts):
    provider_server.route(
        "/emissions/forecasts/current", Reply(body=payload("carbon-aware-sdk-forecast.json"))
    )
    snapshot = carbon_aware(provider_server).snapshot(parse_time("2023-03-22T12:40Z"), horizon=DAY)
    issued = bundled_forecasts[parse_time("2023-03-22T12:31Z")]
    assert provider_server.paths() == ["/emissions/forecasts/current?location=eastus"]
    assert snapshot.source == "carbon-aware-sdk:eastus"
    assert len(snapshot.slots) == 49
    assert [s.intensity for s in snapshot.slots[:48]] == [issued[s.start] for s in snapshot.slots[:48]]
    assert snapshot.slots[-1].start == parse_time("2023-03-22T12:30Z") + 48 * SLOT


def test_carbon_aware_sdk_errors(provider_server):
    provider_server.route("/emissions/", Reply(400, payload("carbon-aware-sdk-error-400.json")))
    snapshot = carbon_aware(provider_server).snapshot(parse_time("2023-03-22T12:40Z"), horizon=DAY)
    assert not snapshot.available
    assert "HTTP 400: location is required" in snapshot.message


def test_carbon_aware_sdk_other_location_is_unavailable(provider_server):
    provider_server.route("/emissions/", Reply(body=payload("carbon-aware-sdk-forecast.json")))
    snapshot = carbon_aware(provider_server, "westus").snapshot(parse_time("2023-03-22T12:40Z"), horizon=DAY)
    assert not snapshot.available
    assert "no entry for 'westus' (found eastus)" in snapshot.message


@pytest.mark.parametrize(
    ("target", "settings", "expected"),
    [
        ("electricitymaps:DE", {}, "ELECTRICITYMAPS_TOKEN"),
        ("electricitymaps:D E", {"electricitymaps_token": "k"}, "invalid Electricity Maps zone"),
        ("watttime:CAISO_NORTH", {"watttime_username": "u"}, "WATTTIME_PASSWORD"),
        ("carbon-aware-sdk:eastus", {}, "CARBON_AWARE_SDK_BASE_URL"),
        (
            "carbon-aware-sdk:east us",
            {"carbon_aware_sdk_base_url": "http://127.0.0.1:1"},
            "invalid Carbon Aware",
        ),
    ],
)
def test_missing_provider_settings_are_rejected(target, settings, expected):
    with pytest.raises(ValueError, match=expected):
        build_source(target, timeout=1.0, cache_ttl=60.0, settings=settings)
