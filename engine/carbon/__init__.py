"""Carbon-intensity sources: grid APIs, trace replay, staleness handling and forecast extension.

`build_source(target, timeout=..., cache_ttl=..., settings=...)` turns a
schedule's `scheduler.carbonTarget` into a `CarbonSource`:

| target | source |
|---|---|
| "" or "trace" | the bundled GB national trace, March 2023, replayed |
| "trace:<actual.csv>[,<forecast.csv>]" | your own CSV files in the trace directory (CARBON_TRACE_DIR) |
| "national", "region:<1-17>", "postcode:<outward code>" | GB Carbon Intensity API |
| "electricitymaps:<zone>" | Electricity Maps v3 (needs a token) |
| "watttime:<region>" | WattTime v3 MOER (needs a username and password) |
| "carbon-aware-sdk:<location>" | a self-hosted Carbon Aware SDK WebAPI |

Identical arguments return the same instance, so the replay clock, the
provider cache and the fitted forecasts survive a schedule's configuration
being sent again. `settings_from_env` reads the engine's environment into the
`settings` dict; docs/carbon.md lists the variables.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from pathlib import Path

from engine.carbon import carbonaware, electricitymaps, gb, watttime
from engine.carbon.base import CarbonSource, ProviderError, parse_time
from engine.carbon.live import LiveSource
from engine.carbon.trace import DATA_DIR, DEFAULT_ACTUAL, DEFAULT_FORECAST, TraceSource, load_trace

__all__ = ["CarbonSource", "ProviderError", "build_source", "settings_from_env", "VALID_FORMS"]

log = logging.getLogger(__name__)

VALID_FORMS = (
    '"" or "trace" (bundled GB trace)',
    '"trace:<actual.csv>[,<forecast.csv>]"',
    '"national"',
    '"region:<1-17>"',
    '"postcode:<outward code>"',
    '"electricitymaps:<zone>"',
    '"watttime:<region>"',
    '"carbon-aware-sdk:<location>"',
)
LIVE_KINDS = ("national", "region", "postcode", "electricitymaps", "watttime", "carbon-aware-sdk")
DEFAULT_STALENESS_LIMIT = 3 * 3600.0

# Environment variable per settings key; values are strings until parsed.
ENV_SETTINGS = {
    "CARBON_TRACE_ACTUAL": "trace_actual",
    "CARBON_TRACE_FORECAST": "trace_forecast",
    "CARBON_TRACE_DIR": "trace_dir",
    "CARBON_TRACE_START": "trace_start",
    "CARBON_TRACE_SPEEDUP": "trace_speedup",
    "CARBON_STALENESS_LIMIT": "staleness_limit",
    "CARBON_FORECAST_WAIT": "forecast_wait",
    "CARBON_GB_BASE_URL": "gb_base_url",
    "ELECTRICITYMAPS_BASE_URL": "electricitymaps_base_url",
    "ELECTRICITYMAPS_TOKEN": "electricitymaps_token",
    "WATTTIME_BASE_URL": "watttime_base_url",
    "WATTTIME_USERNAME": "watttime_username",
    "WATTTIME_PASSWORD": "watttime_password",
    "CARBON_AWARE_SDK_BASE_URL": "carbon_aware_sdk_base_url",
}

_sources: dict[tuple, CarbonSource] = {}
_sources_lock = threading.Lock()


def settings_from_env(environ: Mapping[str, str]) -> dict:
    """Collect the carbon settings present in `environ` (for example `os.environ`)."""
    return {key: environ[name] for name, key in ENV_SETTINGS.items() if environ.get(name, "") != ""}


def build_source(
    target: str, *, timeout: float, cache_ttl: float, settings: dict | None = None
) -> CarbonSource:
    """Return the carbon source for a `carbonTarget`, shared between identical requests.

    Raises ValueError for an unknown target form (the message lists the valid
    forms), an invalid setting, or a trace file that cannot be read.
    """
    settings = dict(settings or {})
    timeout = _seconds("carbonTimeout", timeout)
    cache_ttl = _seconds("carbonCacheTTL", cache_ttl)
    # repr() makes any setting value hashable; equal settings give equal keys.
    key = (str(target).strip(), timeout, cache_ttl,
           tuple(sorted((name, repr(value)) for name, value in settings.items())))
    with _sources_lock:
        source = _sources.get(key)
        if source is None:
            source = _create_source(key[0], timeout=timeout, cache_ttl=cache_ttl, settings=settings)
            _sources[key] = source
        return source


def close_sources() -> None:
    """Close and forget every shared source (tests and shutdown)."""
    with _sources_lock:
        for source in _sources.values():
            source.close()
        _sources.clear()


def _create_source(target: str, *, timeout: float, cache_ttl: float, settings: dict) -> CarbonSource:
    kind, _, argument = target.partition(":")
    kind, argument = kind.strip().lower(), argument.strip()
    if kind in ("", "trace"):
        return _trace_source(argument, settings)
    needs_argument = kind in LIVE_KINDS and kind != "national"
    if kind not in LIVE_KINDS or needs_argument != bool(argument):
        raise ValueError(f"unknown carbonTarget {target!r}: use one of {'; '.join(VALID_FORMS)}")
    options = _live_options(timeout, cache_ttl, settings)
    return _live_source(kind, argument, options=options, settings=settings)


def _live_options(timeout: float, cache_ttl: float, settings: dict) -> dict:
    if timeout <= 0:
        raise ValueError(f"invalid carbonTimeout {timeout!r}: must be > 0 seconds")
    if cache_ttl < 0:
        raise ValueError(f"invalid carbonCacheTTL {cache_ttl!r}: must be >= 0 seconds")
    staleness = _number_setting(settings, "staleness_limit", DEFAULT_STALENESS_LIMIT)
    if staleness < 0:
        raise ValueError(f"invalid carbon setting staleness_limit={staleness!r}: must be >= 0 seconds")
    return {
        "timeout": timeout,
        "cache_ttl": cache_ttl,
        "staleness_limit": staleness,
        "forecast_wait": _number_setting(settings, "forecast_wait", 0.0),
    }


def _live_source(kind: str, argument: str, *, options: dict, settings: dict) -> LiveSource:
    if kind in ("national", "region", "postcode"):
        base_url = _url_setting(settings, "gb_base_url", gb.DEFAULT_BASE_URL)
        if kind == "national":
            return gb.CarbonIntensitySource(scope="national", base_url=base_url, **options)
        area = gb.region_id(argument) if kind == "region" else gb.outward_postcode(argument)
        return gb.CarbonIntensitySource(scope=kind, area=area, base_url=base_url, **options)
    if kind == "electricitymaps":
        return electricitymaps.ElectricityMapsSource(
            zone=electricitymaps.zone_name(argument),
            token=_required_setting(settings, "electricitymaps_token", "ELECTRICITYMAPS_TOKEN"),
            base_url=_url_setting(settings, "electricitymaps_base_url", electricitymaps.DEFAULT_BASE_URL),
            **options,
        )
    if kind == "watttime":
        return watttime.WattTimeSource(
            region=watttime.region_name(argument),
            username=_required_setting(settings, "watttime_username", "WATTTIME_USERNAME"),
            password=_required_setting(settings, "watttime_password", "WATTTIME_PASSWORD"),
            base_url=_url_setting(settings, "watttime_base_url", watttime.DEFAULT_BASE_URL),
            **options,
        )
    return carbonaware.CarbonAwareSdkSource(
        location=carbonaware.location_name(argument),
        base_url=_url_setting(settings, "carbon_aware_sdk_base_url", None),
        **options,
    )


def _required_setting(settings: dict, key: str, env_name: str) -> str:
    value = str(settings.get(key) or "").strip()
    if not value:
        raise ValueError(f"missing carbon setting {key}: set {env_name} in the engine's environment")
    return value


def _url_setting(settings: dict, key: str, default: str | None) -> str:
    value = str(settings.get(key) or default or "").strip()
    if not value:
        env_name = next(name for name, setting in ENV_SETTINGS.items() if setting == key)
        raise ValueError(f"missing carbon setting {key}: set {env_name} to the service's base URL")
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"invalid carbon setting {key}={value!r}: expected an http:// or https:// URL")
    return value


def _trace_source(argument: str, settings: dict) -> TraceSource:
    if argument:
        actual, _, forecast = (part.strip() for part in argument.partition(","))
        trace_dir = Path(settings.get("trace_dir") or DATA_DIR)
        actual_path = _trace_file(actual, trace_dir)
        forecast_path = _trace_file(forecast, trace_dir) if forecast else None
    elif settings.get("trace_forecast") and not settings.get("trace_actual"):
        raise ValueError(
            "carbon setting trace_forecast is set without trace_actual: "
            "set CARBON_TRACE_ACTUAL too, or unset CARBON_TRACE_FORECAST to use the bundled trace"
        )
    elif settings.get("trace_actual"):
        actual_path = Path(settings["trace_actual"])
        forecast_path = Path(settings["trace_forecast"]) if settings.get("trace_forecast") else None
    else:
        actual_path, forecast_path = DEFAULT_ACTUAL, DEFAULT_FORECAST

    start = None
    if settings.get("trace_start"):
        start = parse_time(str(settings["trace_start"]))
        if start is None:
            raise ValueError(
                f"invalid trace_start {settings['trace_start']!r}: "
                "expected RFC 3339 such as 2023-03-22T00:00Z"
            )
    return TraceSource(
        load_trace(actual_path, forecast_path),
        start=start,
        speedup=_number_setting(settings, "trace_speedup", 1.0),
        forecast_wait=_number_setting(settings, "forecast_wait", 0.0),
    )


def _trace_file(name: str, trace_dir: Path) -> Path:
    """Resolve a trace file named in a carbonTarget, which must lie in `trace_dir`.

    Schedules come from spec authors, not from the engine's operator, so they may
    read only the trace directory. The check runs before the file is opened, and the
    message is the same whether or not the file exists.
    """
    base = trace_dir.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise ValueError(
            f"invalid trace file {name!r}: it must be a file in the engine's trace directory "
            "(CARBON_TRACE_DIR, by default the bundled engine/data/carbon); give its name relative to it"
        )
    return path


def _seconds(name: str, value: object) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid {name} {value!r}: expected a number of seconds") from None
    if math.isnan(seconds):
        raise ValueError(f"invalid {name} {value!r}: expected a number of seconds")
    return seconds


def _number_setting(settings: dict, key: str, default: float) -> float:
    raw = settings.get(key, default)
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"invalid carbon setting {key}={raw!r}: expected a number") from None
