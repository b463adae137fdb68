"""GB Carbon Intensity API client (api.carbonintensity.org.uk, no key, times in UTC).

Endpoints used, all 48-hour forecasts of half-hour slots starting with the
slot that contains `{from}` (formatted `2023-03-14T03:30Z`):

- national: `GET /intensity/{from}/fw48h` returns
  `{"data": [{"from", "to", "intensity": {"forecast", "actual", "index"}}]}`;
  `actual` is null for future slots.
- region: `GET /regional/intensity/{from}/fw48h/regionid/{id}` (ids 1-17);
- postcode: `GET /regional/intensity/{from}/fw48h/postcode/{outward code}`.
  Regional bodies carry forecasts only, as `{"data": {"regionid", ..., "data": [...]}}`;
  some regional endpoints wrap the outer `data` in a one-element list, so both are read.

A body without a usable slot (`{}`, `{"data": []}`, an empty inner list, only
nulls) raises ProviderError; single bad entries are skipped and counted.
"""

from __future__ import annotations

import re
from datetime import datetime

from engine.carbon.base import ProviderError, Reading, finite_number, format_time, parse_time
from engine.carbon.live import LiveSource

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
REGION_IDS = range(1, 18)
# Outward part of a UK postcode, as the API accepts it: "RG10", "SW1A", "M1".
POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
INDEX_VALUES = ("very low", "low", "moderate", "high", "very high")


class CarbonIntensitySource(LiveSource):
    """National, regional or postcode forecast from the GB Carbon Intensity API."""

    def __init__(self, *, scope: str, area: str = "", base_url: str = DEFAULT_BASE_URL, **options) -> None:
        self.scope = scope
        self.area = area
        self.base_url = base_url.rstrip("/")
        label = "national" if scope == "national" else f"{scope}:{area}"
        super().__init__(name=f"carbonintensity.org.uk:{label}", **options)

    def fetch(self, now: datetime) -> list[Reading]:
        start = format_time(now)
        if self.scope == "national":
            return parse_national(self.get_json(f"{self.base_url}/intensity/{start}/fw48h"))
        path = "regionid" if self.scope == "region" else "postcode"
        url = f"{self.base_url}/regional/intensity/{start}/fw48h/{path}/{self.area}"
        return parse_regional(self.get_json(url))


def region_id(text: str) -> str:
    """Validate a GB region id (1-17); raises ValueError listing the valid range."""
    if not text.strip().isdigit() or int(text) not in REGION_IDS:
        raise ValueError(
            f"invalid GB region id {text!r}: use 1-14 for a distribution region, 15 England, "
            "16 Scotland or 17 Wales, as in region:13"
        )
    return str(int(text))


def outward_postcode(text: str) -> str:
    """Validate and normalise the outward part of a UK postcode; raises ValueError."""
    code = text.strip().upper().split(" ")[0]
    if not POSTCODE.match(code):
        raise ValueError(
            f"invalid postcode {text!r}: use the outward part of a UK postcode, as in postcode:RG10"
        )
    return code


def parse_national(doc: object) -> list[Reading]:
    """Read a national `/intensity` body; the measured value wins over the forecast when present."""
    return _readings(_entries(doc, "national"), prefer_actual=True)


def parse_regional(doc: object) -> list[Reading]:
    """Read a regional body (`data` as an object or a one-element list, with an inner `data` list)."""
    outer = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(outer, list):
        outer = outer[0] if outer else None
    if not isinstance(outer, dict):
        raise ProviderError("no usable forecast: regional response has no 'data' object")
    return _readings(_entries(outer, "regional"), prefer_actual=False)


def _entries(doc: object, kind: str) -> list:
    entries = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ProviderError(f"no usable forecast: {kind} response has no 'data' list")
    if not entries:
        raise ProviderError(f"no usable forecast: {kind} response has an empty 'data' list")
    return entries


def _readings(entries: list, *, prefer_actual: bool) -> list[Reading]:
    readings = []
    for entry in entries:
        reading = _reading(entry, prefer_actual=prefer_actual)
        if reading is not None:
            readings.append(reading)
    if not readings:
        raise ProviderError(f"no usable forecast: none of the {len(entries)} slots has a time and a value")
    return readings


def _reading(entry: object, *, prefer_actual: bool) -> Reading | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("intensity"), dict):
        return None
    start, end = parse_time(entry.get("from")), parse_time(entry.get("to"))
    if start is None or end is None or end <= start:
        return None
    intensity = entry["intensity"]
    actual = finite_number(intensity.get("actual")) if prefer_actual else None
    forecast = finite_number(intensity.get("forecast"))
    value = actual if actual is not None else forecast
    if value is None or value < 0:
        return None
    index = intensity.get("index") if intensity.get("index") in INDEX_VALUES else None
    return Reading(start, end, value, actual=actual is not None, index=index)
