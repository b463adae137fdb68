"""WattTime API v3 client: marginal emissions (MOER) forecast for a grid region.

Log in with `GET {base}/login` and HTTP Basic auth, which returns `{"token"}`.
Later calls send `Authorization: Bearer <token>`, and the client logs in again
once when a call returns 401, because tokens expire after about 30 minutes.
`GET {base}/v3/forecast?region=CAISO_NORTH&signal_type=co2_moer` returns
`{"data": [{"point_time", "value"}], "meta": {"units": "lbs_co2_per_mwh",
"data_point_period_seconds": 300, ...}}`. Values are converted from lbs/MWh to
g/kWh (x 0.4536) and averaged onto half-hour slots.

MOER is the marginal rate (the emissions of the plant that serves extra
demand), not the average intensity the GB API reports, so thresholds tuned
for one do not carry over to the other.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

from engine.carbon.base import ProviderError, Reading, finite_number, parse_time
from engine.carbon.live import LiveSource, ProviderHTTPError

DEFAULT_BASE_URL = "https://api.watttime.org"
REGION = re.compile(r"^[A-Za-z0-9_-]{2,60}$")
# 1 lb = 453.59237 g and 1 MWh = 1000 kWh, so lbs/MWh x 0.4536 = g/kWh.
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
DEFAULT_PERIOD_SECONDS = 300


class WattTimeSource(LiveSource):
    """MOER forecast for one WattTime region."""

    def __init__(
        self, *, region: str, username: str, password: str, base_url: str = DEFAULT_BASE_URL, **options
    ) -> None:
        self.region = region
        self.base_url = base_url.rstrip("/")
        self._credentials = (username, password)
        self._token: str | None = None
        self._token_lock = threading.Lock()
        super().__init__(name=f"watttime:{region}", **options)

    def fetch(self, now: datetime) -> list[Reading]:
        try:
            return parse_forecast(self._forecast_body(self._current_token()))
        except ProviderHTTPError as error:
            if error.status != 401:
                raise
        # The token expired or was revoked: log in once more and retry once.
        return parse_forecast(self._forecast_body(self._login()))

    def _forecast_body(self, token: str) -> object:
        return self.get_json(
            f"{self.base_url}/v3/forecast",
            params={"region": self.region, "signal_type": "co2_moer"},
            headers={"Authorization": f"Bearer {token}"},
        )

    def _current_token(self) -> str:
        with self._token_lock:
            token = self._token
        return token or self._login()

    def _login(self) -> str:
        try:
            body = self.get_json(f"{self.base_url}/login", auth=self._credentials)
        except ProviderHTTPError as error:
            raise ProviderError(f"WattTime login failed: {error}") from None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderError("WattTime login failed: response has no 'token'")
        with self._token_lock:
            self._token = token
        return token


def region_name(text: str) -> str:
    """Validate a WattTime region code; raises ValueError with an example."""
    if not REGION.match(text.strip()):
        raise ValueError(f"invalid WattTime region {text!r}: use a region code such as watttime:CAISO_NORTH")
    return text.strip()


def parse_forecast(doc: object) -> list[Reading]:
    """Read a v3 forecast body into g/kWh readings, one per data point."""
    points = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(points, list) or not points:
        raise ProviderError("no usable forecast: response has no 'data' list or it is empty")
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    units = meta.get("units", "lbs_co2_per_mwh")
    if units != "lbs_co2_per_mwh":
        raise ProviderError(f"unsupported WattTime units {units!r}: expected lbs_co2_per_mwh")
    period = finite_number(meta.get("data_point_period_seconds")) or DEFAULT_PERIOD_SECONDS
    readings = []
    for point in points:
        if not isinstance(point, dict):
            continue
        start, value = parse_time(point.get("point_time")), finite_number(point.get("value"))
        if start is None or value is None or value < 0:
            continue
        end = start + timedelta(seconds=period)
        readings.append(Reading(start, end, value * LBS_PER_MWH_TO_G_PER_KWH))
    if not readings:
        raise ProviderError(f"no usable forecast: none of the {len(points)} points has a time and a value")
    return readings
