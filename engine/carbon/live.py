"""Live carbon providers: background refresh, cache, staleness and forecast extension.

A `LiveSource` subclass only implements `fetch`, which calls its API and
returns `Reading`s or raises `ProviderError`. This module supplies the rest:

- Refresh runs on one worker thread per source. `snapshot` starts a refresh
  when the cached data is older than `cache_ttl` and waits for it at most
  `timeout` seconds, and only the call that started the refresh waits. So no
  request waits on provider I/O for longer than `timeout`.
- After a failure the next attempt waits `retry_interval` (the smaller of the
  cache TTL and 60 s), so a down provider is not called on every request.
- A failed refresh keeps the last good data and marks snapshots `stale`.
  When the last good data is older than `staleness_limit`, or no longer
  covers the current slot, the snapshot is `available=False` with a message.
- Readings are resampled to half-hour slots, and gaps inside the data are
  interpolated. Slots past its end are extended by the statsmodels forecaster,
  fitted on what the provider reported over the last 14 days.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests

from engine.carbon.base import (
    CarbonSource,
    ProviderError,
    Reading,
    as_utc,
    format_time,
    resample_to_slots,
    slot_start,
    slots_needed,
)
from engine.carbon.extension import ForecastExtender
from engine.model import SLOT, CarbonSlot, CarbonSnapshot

log = logging.getLogger(__name__)

HISTORY = timedelta(days=14)
# A provider forecast may start up to this long after the current slot
# begins, as an hourly forecast published mid-hour does. Its first value is
# then used for the current slot.
MAX_BACKFILL = timedelta(hours=1)


class ProviderHTTPError(ProviderError):
    """The provider returned an HTTP error status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _State:
    """Last data and errors received from the provider, guarded by `LiveSource._lock`."""

    slots: dict[datetime, Reading] = field(default_factory=dict)
    fetched_at: float | None = None  # time.monotonic() of the last good refresh
    fetched_wall: datetime | None = None
    error: str | None = None
    failed_at: float | None = None
    failures: int = 0
    generation: int = 0
    history: dict[datetime, float] = field(default_factory=dict)


class LiveSource(CarbonSource):
    """Base of every API-backed source; subclasses implement `fetch`."""

    def __init__(
        self,
        *,
        name: str,
        timeout: float,
        cache_ttl: float,
        staleness_limit: float,
        forecast_wait: float = 0.0,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.staleness_limit = staleness_limit
        self.retry_interval = min(cache_ttl, 60.0)
        self.http = requests.Session()
        self._state = _State()
        self._lock = threading.Lock()
        self._refresh: Future | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"carbon-{name}")
        self._extender = ForecastExtender(wait=forecast_wait, name="carbon-forecast")

    @abstractmethod
    def fetch(self, now: datetime) -> list[Reading]:
        """Call the provider and return its readings; raises ProviderError on any unusable response."""

    def snapshot(self, now: datetime, *, horizon: timedelta) -> CarbonSnapshot:
        now = as_utc(now)
        try:
            self._refresh_if_due(now)
            return self._build(now, horizon)
        except Exception as error:  # noqa: BLE001 - a snapshot must never raise into the engine
            log.exception("carbon snapshot failed source=%s", self.name)
            return self._unavailable(now, f"carbon source failed: {error!r}")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._extender.close()
        self.http.close()

    # HTTP helpers shared by the providers.

    def get_json(self, url: str, **kwargs) -> object:
        """GET `url` with the source timeout and return the JSON body; raises ProviderError."""
        try:
            response = self.http.get(url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise ProviderError(f"timed out after {self.timeout:g} s") from None
        except requests.RequestException as error:
            raise ProviderError(f"request failed: {type(error).__name__}") from None
        if response.status_code >= 400:
            raise ProviderHTTPError(
                f"HTTP {response.status_code}: {error_text(response)}", status=response.status_code
            )
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"response is not JSON (HTTP {response.status_code})") from None

    # Refresh.

    def _refresh_if_due(self, now: datetime) -> None:
        clock = time.monotonic()
        with self._lock:
            state = self._state
            due = state.fetched_at is None or clock - state.fetched_at >= self.cache_ttl
            backing_off = state.failed_at is not None and clock - state.failed_at < self.retry_interval
            idle = self._refresh is None or self._refresh.done()
            if not (due and idle and not backing_off):
                return
            self._refresh = self._executor.submit(self._run_refresh, now)
            started = self._refresh
        try:
            started.result(timeout=self.timeout)
        except TimeoutError:
            log.info("carbon refresh still running source=%s waited=%gs", self.name, self.timeout)

    def _run_refresh(self, now: datetime) -> None:
        try:
            slots = resample_to_slots(self.fetch(now))
            if not slots:
                raise ProviderError("response contains no usable slots")
        except Exception as error:  # noqa: BLE001 - every failure is kept as state, never raised
            self._record_failure(error)
            return
        with self._lock:
            state = self._state
            state.slots = slots
            state.fetched_at = time.monotonic()
            state.fetched_wall = datetime.now(UTC)
            state.failures = 0
            state.generation += 1
            for start, reading in slots.items():
                state.history[start] = reading.intensity
            horizon_start = min(slots) - HISTORY
            state.history = {s: v for s, v in state.history.items() if s >= horizon_start}
        log.info(
            "carbon refresh succeeded source=%s slots=%d from=%s to=%s",
            self.name, len(slots), format_time(min(slots)), format_time(max(slots) + SLOT),
        )

    def _record_failure(self, error: Exception) -> None:
        text = str(error) if isinstance(error, ProviderError) else f"unexpected error: {error!r}"
        with self._lock:
            state = self._state
            state.error = text
            state.failed_at = time.monotonic()
            state.failures += 1
            failures = state.failures
        # Log the first failure of a run, then every tenth, so a long outage does not flood the log.
        if failures == 1 or failures % 10 == 0:
            log.warning("carbon refresh failed source=%s failures=%d error=%s", self.name, failures, text)

    # Snapshot building.

    def _build(self, now: datetime, horizon: timedelta) -> CarbonSnapshot:
        with self._lock:
            state = self._state
            slots, history, generation = state.slots, dict(state.history), state.generation
            fetched_at, fetched_wall = state.fetched_at, state.fetched_wall
            error, failed_at = state.error, state.failed_at

        if fetched_at is None:
            reason = error or f"no response within {self.timeout:g} s yet"
            return self._unavailable(now, f"no usable forecast from {self.name}: {reason}")
        age = time.monotonic() - fetched_at
        failing = failed_at is not None and failed_at >= fetched_at
        if age > self.staleness_limit:
            return self._unavailable(
                now,
                f"no usable forecast: the last good data from {format_time(fetched_wall)} is "
                f"{age:.0f} s old, over the staleness limit of {self.staleness_limit:g} s; "
                f"last error: {error or 'none'}",
            )

        built = self._slots_from(slots, history, now=now, horizon=horizon, generation=generation)
        if isinstance(built, str):
            return self._unavailable(now, built)
        carbon_slots, index, notes = built
        if failing:
            notes.insert(0, f"stale: {error}; serving data fetched {age:.0f} s ago")
        return CarbonSnapshot(
            now=now, slots=carbon_slots, source=self.name, stale=failing, index=index,
            message="; ".join(notes),
        )

    def _slots_from(
        self, slots: dict[datetime, Reading], history: dict[datetime, float], *,
        now: datetime, horizon: timedelta, generation: int,
    ) -> tuple[tuple[CarbonSlot, ...], str | None, list[str]] | str:
        """Turn cached slots into the snapshot's slots, or return why that is impossible."""
        current = slot_start(now)
        count = slots_needed(now, horizon)
        last = max(slots)
        if last + SLOT <= now:
            return f"no usable forecast: the provider's data ends at {format_time(last + SLOT)}, before now"
        notes: list[str] = []
        first_ahead = min((s for s in slots if s >= current), default=None)
        if current not in slots and first_ahead is not None and first_ahead - current > MAX_BACKFILL:
            return f"no usable forecast: the provider's data starts at {format_time(first_ahead)}, after now"

        values: list[float | None] = []
        actual: list[bool] = []
        for step in range(count):
            reading = slots.get(current + SLOT * step)
            values.append(reading.intensity if reading else None)
            actual.append(bool(reading and reading.actual))
        if values[0] is None:
            values[0] = slots[first_ahead].intensity
            notes.append(f"current slot takes the value of {format_time(first_ahead)}")
        filled = _fill_inner_gaps(values)
        if filled:
            notes.append(f"{filled} missing slots interpolated")

        trailing = next((i for i in range(len(values)) if values[i] is None), None)
        if trailing is not None:
            series = _history_series(history, end=last)
            extension, _ = self._extender.extend((generation, last), series, count)
            offset = int((current - last) / SLOT) - 1  # extension[0] is the slot after `last`
            for step in range(trailing, count):
                values[step] = extension.values[offset + step]
            notes.append(f"{count - trailing} slots from {extension.model}")
            if extension.message:
                notes.append(extension.message)

        carbon_slots = tuple(
            CarbonSlot(current + SLOT * i, current + SLOT * (i + 1), float(values[i]), actual=actual[i])
            for i in range(count)
        )
        current_reading = slots.get(current)
        return carbon_slots, current_reading.index if current_reading else None, notes

    def _unavailable(self, now: datetime, message: str) -> CarbonSnapshot:
        return CarbonSnapshot(now=now, source=self.name, available=False, message=message)


def _fill_inner_gaps(values: list[float | None]) -> int:
    """Interpolate None values that have a known value on both sides; return how many."""
    known = [i for i, v in enumerate(values) if v is not None]
    filled = 0
    for lo, hi in zip(known, known[1:], strict=False):
        for i in range(lo + 1, hi):
            values[i] = values[lo] + (values[hi] - values[lo]) * (i - lo) / (hi - lo)
            filled += 1
    return filled


def _history_series(history: dict[datetime, float], *, end: datetime) -> list[float | None]:
    """Return the half-hourly history up to `end` inclusive, None where nothing was reported."""
    start = min(history)
    count = int((end - start) / SLOT) + 1
    return [history.get(start + SLOT * i) for i in range(count)]


def error_text(response: requests.Response) -> str:
    """Extract a short error description from an error response, without echoing large bodies."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no error description"
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "title"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("code")
            if isinstance(value, str) and value:
                return value[:200]
    return response.reason or "no error description"
