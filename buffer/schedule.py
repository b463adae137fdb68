"""The engine's current decision, as the router and the consumer use it.

`ScheduleCache` fetches `GET /schedule/<ns>/<name>` from the engine, keeps the
decision until its `validUntil` (or at most `schedule_max_age` seconds, so a
manual override shows up soon), and refreshes it on a daemon thread. Only the
first requests of a process wait for the engine, for at most
`FIRST_FETCH_WAIT` seconds, so that a reachable engine is queried before the
fallback is used. When the engine cannot be reached the last
decision stays in force. Before the first decision arrives, every request goes
to the most precise configured flavour, because that choice can never hurt
quality. The cache then logs a WARNING and reports the fallback through the
`on_fallback` callback, which the processes turn into a metric.

Only flavours named in the configuration can be chosen: the configuration is
what the queues were declared from, and metric labels come from it too.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import requests

from buffer.config import BufferConfig, FlavourSpec
from buffer.process_id import current_pid

log = logging.getLogger(__name__)

EVALUATORS = ("router", "consumer")
FIRST_FETCH_WAIT = 2.0  # seconds


@dataclass(frozen=True)
class Schedule:
    """Flavour weights, throttle and evaluator in force, and where they came from."""

    weights: dict[str, float]
    throttle: float = 1.0
    evaluator: str = "router"
    valid_until: float | None = None  # epoch seconds
    source: str = "engine"  # "engine" or "fallback"
    _names: tuple[str, ...] = field(default=(), repr=False)
    _cumulative: tuple[float, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        names = tuple(name for name, weight in self.weights.items() if weight > 0)
        running, cumulative = 0.0, []
        for name in names:
            running += self.weights[name]
            cumulative.append(running)
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    def draw(self, rng: random.Random) -> str:
        """Pick a flavour name with probability proportional to its weight."""
        point = rng.random() * self._cumulative[-1]
        index = bisect.bisect_right(self._cumulative, point)
        return self._names[min(index, len(self._names) - 1)]


def fallback_schedule(config: BufferConfig) -> Schedule:
    """Send everything to the most precise configured flavour."""
    return Schedule(weights={config.most_precise.name: 100.0}, source="fallback")


def parse_decision(decision: object, *, flavours: tuple[FlavourSpec, ...], key: str) -> Schedule:
    """Turn an engine decision into a Schedule over the configured flavours.

    Raises ValueError when the decision is malformed (not a JSON object, or a
    weight or throttle that is not a finite number), and when it has no
    positive weight for any configured flavour, because routing by it would
    send traffic nowhere.
    """
    if not isinstance(decision, dict):
        raise ValueError(f"decision for {key} is {type(decision).__name__}, expected a JSON object")
    known = {flavour.name for flavour in flavours}
    raw_weights = decision.get("flavourWeights")
    if not isinstance(raw_weights, dict):
        raise ValueError(f"decision for {key} has no flavourWeights object")
    weights = {}
    for name, value in raw_weights.items():
        if name not in known:
            log.warning(
                "event=schedule_unknown_flavour schedule=%s flavour=%s action=ignored", key, name
            )
            continue
        weights[name] = max(0.0, _finite(value, f"decision for {key}: weight of {name}"))
    if not any(weight > 0 for weight in weights.values()):
        raise ValueError(f"decision for {key} gives no positive weight to any of {sorted(known)}")

    processing = decision.get("processing") or {}
    if not isinstance(processing, dict):
        raise ValueError(f"decision for {key} has a processing field that is not a JSON object")
    raw_throttle = processing.get("throttle", 1.0)
    throttle = min(1.0, max(0.0, _finite(raw_throttle, f"decision for {key}: throttle")))
    evaluator = decision.get("evaluator") or "router"
    if evaluator not in EVALUATORS:
        log.warning(
            "event=schedule_unknown_evaluator schedule=%s evaluator=%s action=router", key, evaluator
        )
        evaluator = "router"
    return Schedule(
        weights=weights,
        throttle=throttle,
        evaluator=evaluator,
        valid_until=_epoch(decision.get("validUntil")),
        source="engine",
    )


def _finite(value: object, label: str) -> float:
    # JSON from Python's encoder may contain NaN and Infinity, which no weight or throttle can be.
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} is {value!r}, expected a finite number") from None
    if not math.isfinite(number):
        raise ValueError(f"{label} is {value!r}, expected a finite number")
    return number


def _epoch(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class ScheduleCache:
    """The current Schedule, refreshed from the engine on a background thread."""

    def __init__(
        self,
        config: BufferConfig,
        *,
        component: str = "router",
        on_fallback: Callable[[bool], None] = lambda active: None,
        session: requests.Session | None = None,
    ) -> None:
        self._config = config
        self._component = component
        self._on_fallback = on_fallback
        self._session = session or requests.Session()
        self._schedule = fallback_schedule(config)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner_pid = 0
        self._fallback_logged = False
        self._first_attempt = threading.Event()
        on_fallback(True)

    @property
    def current(self) -> Schedule:
        """Return the schedule in force, starting the refresher in this process if needed."""
        self._ensure_refresher()
        if self._schedule.source == "fallback" and self._config.engine_url:
            # Only the first requests of a process wait, and only briefly, so a
            # reachable engine is queried before the fallback is used.
            self._first_attempt.wait(timeout=FIRST_FETCH_WAIT)
        schedule = self._schedule
        if schedule.source == "fallback" and not self._fallback_logged:
            self._fallback_logged = True
            log.warning(
                "event=schedule_fallback component=%s schedule=%s flavour=%s reason=no_decision engine=%s",
                self._component,
                self._config.schedule_key,
                self._config.most_precise.name,
                self._config.engine_url or "unset",
            )
        return schedule

    @property
    def latest(self) -> Schedule:
        """Return the schedule in force without waiting for the first fetch and without logging.

        For callers on an event loop, which must never block. Read `current`
        once at start-up so that a reachable engine is queried first and the
        fallback is logged.
        """
        return self._schedule

    def refresh(self) -> bool:
        """Fetch the decision once; keep the previous schedule and return False on failure."""
        config = self._config
        if not config.engine_url:
            return False
        url = f"{config.engine_url}/schedule/{config.namespace}/{config.schedule_name}"
        try:
            reply = self._session.get(url, timeout=min(5.0, config.request_timeout))
            reply.raise_for_status()
            schedule = parse_decision(reply.json(), flavours=config.flavours, key=config.schedule_key)
        except (requests.RequestException, ValueError, TypeError) as error:
            log.warning(
                "event=schedule_refresh_failed component=%s schedule=%s url=%s error=%r action=keep_%s",
                self._component,
                config.schedule_key,
                url,
                str(error)[:200],
                self._schedule.source,
            )
            return False
        with self._lock:
            changed = (
                schedule.weights != self._schedule.weights
                or schedule.throttle != self._schedule.throttle
                or schedule.evaluator != self._schedule.evaluator
            )
            self._schedule = schedule
        if changed:
            log.info(
                "event=schedule_updated component=%s schedule=%s weights=%s throttle=%.2f evaluator=%s",
                self._component,
                config.schedule_key,
                schedule.weights,
                schedule.throttle,
                schedule.evaluator,
            )
        self._on_fallback(False)
        return True

    def stop(self) -> None:
        self._stop.set()

    def start(self) -> None:
        """Start the background refresher in this process (idempotent, fork-aware)."""
        self._ensure_refresher()

    def _ensure_refresher(self) -> None:
        # A forked gunicorn worker inherits the object but not the thread, so the
        # owner pid tells whether this process already runs a refresher.
        if self._owner_pid == current_pid() or not self._config.engine_url:
            return
        with self._lock:
            if self._owner_pid == current_pid():
                return
            self._owner_pid = current_pid()
            self._thread = threading.Thread(target=self._run, name="schedule-refresher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ok = self.refresh()
            except Exception as error:  # noqa: BLE001 - the refresher must outlive any engine reply
                log.exception(
                    "event=schedule_refresh_crashed component=%s schedule=%s error=%r",
                    self._component,
                    self._config.schedule_key,
                    error,
                )
                ok = False
            self._first_attempt.set()
            self._stop.wait(self._next_delay(ok))

    def _next_delay(self, ok: bool) -> float:
        if not ok:
            return self._config.schedule_retry
        valid_until = self._schedule.valid_until
        if valid_until is None:
            return self._config.schedule_max_age
        return min(self._config.schedule_max_age, max(1.0, valid_until - time.time()))
