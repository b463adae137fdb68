"""Electricity Maps API v3 client: carbon-intensity forecast for a zone, in gCO2eq/kWh.

`GET {base}/v3/carbon-intensity/forecast?zone=DE` with header
`auth-token: <key>` returns
`{"zone", "forecast": [{"carbonIntensity", "datetime"}], "updatedAt"}`,
hourly by default, each `datetime` being the start of its period. When the
forecast does not cover the current slot, `GET /v3/carbon-intensity/latest?zone=DE`
(`{"zone", "carbonIntensity", "datetime", "updatedAt"}`) supplies it.
Forecast access depends on the Electricity Maps plan; a 401 or 403 response is
reported as a provider failure like any other.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from engine.carbon.base import ProviderError, Reading, finite_number, parse_time, slot_start
from engine.carbon.live import LiveSource

DEFAULT_BASE_URL = "https://api.electricitymap.org"
ZONE = re.compile(r"^[A-Za-z0-9_-]{2,40}$")
DEFAULT_PERIOD = timedelta(hours=1)


class ElectricityMapsSource(LiveSource):
    """Forecast for one Electricity Maps zone, such as DE or US-CAL-CISO."""

    def __init__(self, *, zone: str, token: str, base_url: str = DEFAULT_BASE_URL, **options) -> None:
        self.zone = zone
        self.base_url = base_url.rstrip("/")
        self._headers = {"auth-token": token}
        super().__init__(name=f"electricitymaps:{zone}", **options)

    def fetch(self, now: datetime) -> list[Reading]:
        params = {"zone": self.zone}
        url = f"{self.base_url}/v3/carbon-intensity/forecast"
        readings = parse_forecast(self.get_json(url, params=params, headers=self._headers))
        if not any(r.start <= slot_start(now) < r.end for r in readings):
            url = f"{self.base_url}/v3/carbon-intensity/latest"
            latest = parse_latest(self.get_json(url, params=params, headers=self._headers))
            readings.insert(0, latest)
        return readings


def zone_name(text: str) -> str:
    """Validate an Electricity Maps zone key; raises ValueError with an example."""
    if not ZONE.match(text.strip()):
        raise ValueError(f"invalid Electricity Maps zone {text!r}: use a zone key such as electricitymaps:DE")
    return text.strip()


def parse_forecast(doc: object) -> list[Reading]:
    """Read a forecast body; each period lasts until the next `datetime` (one hour for the last)."""
    points = doc.get("forecast") if isinstance(doc, dict) else None
    if not isinstance(points, list) or not points:
        raise ProviderError("no usable forecast: response has no 'forecast' list or it is empty")
    timed = []
    for point in points:
        if not isinstance(point, dict):
            continue
        start, value = parse_time(point.get("datetime")), finite_number(point.get("carbonIntensity"))
        if start is not None and value is not None and value >= 0:
            timed.append((start, value))
    if not timed:
        raise ProviderError(f"no usable forecast: none of the {len(points)} points has a time and a value")
    timed.sort()
    readings = []
    for i, (start, value) in enumerate(timed):
        end = timed[i + 1][0] if i + 1 < len(timed) else start + DEFAULT_PERIOD
        readings.append(Reading(start, min(end, start + DEFAULT_PERIOD), value))
    return readings


def parse_latest(doc: object) -> Reading:
    """Read a `latest` body as a measured one-hour reading."""
    if not isinstance(doc, dict):
        raise ProviderError("no usable value: 'latest' response is not an object")
    start, value = parse_time(doc.get("datetime")), finite_number(doc.get("carbonIntensity"))
    if start is None or value is None or value < 0:
        raise ProviderError("no usable value: 'latest' response lacks 'datetime' or 'carbonIntensity'")
    return Reading(start, start + DEFAULT_PERIOD, value, actual=True)
