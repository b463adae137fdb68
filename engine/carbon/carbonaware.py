"""Green Software Foundation Carbon Aware SDK WebAPI client, for a self-hosted SDK.

`GET {base}/emissions/forecasts/current?location=eastus` returns a JSON array
with one entry per location:
`{"location", "generatedAt", "forecastData": [{"location", "timestamp", "duration", "value"}], ...}`.
`duration` is in minutes and `value` in gCO2/kWh. The SDK has no public
host, so the base URL must be configured. Errors arrive as
ValidationProblemDetails JSON (`{"title", "status", "detail"}`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from engine.carbon.base import ProviderError, Reading, finite_number, parse_time
from engine.carbon.live import LiveSource

LOCATION = re.compile(r"^[A-Za-z0-9_.-]{2,60}$")
DEFAULT_DURATION_MINUTES = 5


class CarbonAwareSdkSource(LiveSource):
    """Forecast for one location name known to the SDK's configured data source."""

    def __init__(self, *, location: str, base_url: str, **options) -> None:
        self.location = location
        self.base_url = base_url.rstrip("/")
        super().__init__(name=f"carbon-aware-sdk:{location}", **options)

    def fetch(self, now: datetime) -> list[Reading]:
        url = f"{self.base_url}/emissions/forecasts/current"
        return parse_forecasts(self.get_json(url, params={"location": self.location}), location=self.location)


def location_name(text: str) -> str:
    """Validate a Carbon Aware SDK location; raises ValueError with an example."""
    if not LOCATION.match(text.strip()):
        raise ValueError(
            f"invalid Carbon Aware SDK location {text!r}: use a name such as carbon-aware-sdk:eastus"
        )
    return text.strip()


def parse_forecasts(doc: object, *, location: str) -> list[Reading]:
    """Read the entry for `location` (case-insensitive) from a forecasts array."""
    if not isinstance(doc, list) or not doc:
        raise ProviderError("no usable forecast: response is not a non-empty array of forecasts")
    entries = [e for e in doc if isinstance(e, dict)]
    entry = next((e for e in entries if str(e.get("location", "")).lower() == location.lower()), None)
    if entry is None:
        found = ", ".join(str(e.get("location")) for e in entries) or "none"
        raise ProviderError(f"no usable forecast: response has no entry for {location!r} (found {found})")
    points = entry.get("forecastData")
    if not isinstance(points, list) or not points:
        raise ProviderError(f"no usable forecast: 'forecastData' for {location!r} is missing or empty")

    readings = []
    for point in points:
        if not isinstance(point, dict):
            continue
        start, value = parse_time(point.get("timestamp")), finite_number(point.get("value"))
        minutes = finite_number(point.get("duration")) or DEFAULT_DURATION_MINUTES
        if start is None or value is None or value < 0 or minutes <= 0:
            continue
        readings.append(Reading(start, start + timedelta(minutes=minutes), value))
    if not readings:
        raise ProviderError(f"no usable forecast: none of the {len(points)} points has a time and a value")
    return readings
