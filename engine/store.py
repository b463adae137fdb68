"""The table of sessions and the carbon sources they share.

Sessions are keyed `namespace/name`. Carbon sources are built once per
(carbonTarget, carbonTimeout, carbonCacheTTL) and shared by every session that
uses the same values. A thousand schedules on the bundled trace thus read one
trace, and a live API is polled once per cache period, not once per schedule.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from engine.config import EngineConfig
from engine.demand import default_forecaster
from engine.ledger import CreditLedger
from engine.model import CarbonSnapshot
from engine.policies import POLICIES, Policy
from engine.session import Session, manual_from_state
from engine.validation import FieldError, ScheduleConfig, ValidationError

log = logging.getLogger(__name__)


class UnavailableSource:
    """Carbon source used when no source can be built: every snapshot is unavailable."""

    name = "none"
    time_scale = 1.0

    def __init__(self, message: str) -> None:
        self.message = message

    def source_now(self, wall_now: datetime) -> datetime:
        return wall_now

    def snapshot(self, now: datetime, *, horizon: timedelta) -> CarbonSnapshot:
        return CarbonSnapshot(now=now, available=False, source=self.name, message=self.message)


class MemoSource:
    """Wrap a carbon source and reuse its last snapshot for up to `memo` of wall-clock time.

    Grid data changes per half-hour slot, yet every session requests a snapshot
    on each evaluation. A thousand schedules evaluating together would build a
    thousand identical snapshots. A snapshot is reused only while the wall
    clock is within `memo` after it was taken, the horizon is the same and
    source-now still lies in the snapshot's first slot.
    """

    def __init__(self, source, *, memo: timedelta = timedelta(seconds=1)) -> None:
        self.source = source
        self.memo = memo
        self._lock = threading.Lock()
        self._last: tuple[datetime, timedelta, CarbonSnapshot] | None = None

    @property
    def name(self) -> str:
        return getattr(self.source, "name", "unknown")

    @property
    def time_scale(self) -> float:
        return getattr(self.source, "time_scale", 1.0)

    def source_now(self, wall_now: datetime) -> datetime:
        return self.source.source_now(wall_now)

    def snapshot(self, now: datetime, *, horizon: timedelta) -> CarbonSnapshot:
        with self._lock:
            last = self._last
        if last is not None and last[1] == horizon and timedelta(0) <= now - last[0] < self.memo:
            slots = last[2].slots
            if not slots or slots[0].start <= self.source.source_now(now) < slots[0].end:
                return last[2]
        snapshot = self.source.snapshot(now, horizon=horizon)
        with self._lock:
            self._last = (now, horizon, snapshot)
        return snapshot


def default_source_factory():
    """Return `engine.carbon.build_source`, or a factory of unavailable sources if it is missing."""
    try:
        from engine.carbon import build_source
    except ImportError:
        log.warning("carbon source unavailable reason=engine.carbon has no build_source")

        def build_unavailable(target, *, timeout, cache_ttl, settings=None):
            return UnavailableSource("no carbon source is installed in this engine")

        return build_unavailable
    return build_source


class SessionStore:
    """Thread-safe table of sessions plus the shared carbon sources."""

    def __init__(self, config: EngineConfig, *, metrics=None) -> None:
        self.config = config
        self.metrics = metrics
        self.source_factory = config.source_factory or default_source_factory()
        self.forecaster = default_forecaster() if config.demand_forecast else None
        self._sessions: dict[str, Session] = {}
        self._sources: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, namespace: str, name: str) -> Session | None:
        return self._sessions.get(f"{namespace}/{name}")

    def remove(self, namespace: str, name: str) -> bool:
        """Forget a session and its metric label sets; returns False when it did not exist."""
        key = f"{namespace}/{name}"
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is None:
            return False
        if self.metrics is not None:
            self.metrics.forget_schedule(key)
        log.info("session removed schedule=%s", key)
        return True

    def source_for(self, config: ScheduleConfig):
        """Return the shared source for the spec's carbon fields; raises ValueError for a bad target."""
        spec = config.scheduler
        key = (spec.carbon_target, spec.carbon_timeout, spec.carbon_cache_ttl)
        with self._lock:
            source = self._sources.get(key)
        if source is not None:
            return source
        source = MemoSource(self.source_factory(spec.carbon_target,
                                                timeout=spec.carbon_timeout.total_seconds(),
                                                cache_ttl=spec.carbon_cache_ttl.total_seconds(),
                                                settings=self.config.carbon_settings))
        with self._lock:
            # Another thread may have built the same source meanwhile; keep the first one.
            source = self._sources.setdefault(key, source)
        log.info("carbon source ready target=%r source=%s", spec.carbon_target, getattr(source, "name", "?"))
        return source

    def policy_for(self, name: str) -> Policy:
        if self.config.policy_factory is not None:
            return self.config.policy_factory(name)
        return POLICIES[name]()

    def configure(self, namespace: str, name: str, config: ScheduleConfig) -> Session:
        """Create or update a session; raises ValidationError when the carbon target or state is invalid."""
        if config.state:
            try:
                check_state(config)
            except ValueError as error:
                raise ValidationError([FieldError("state", str(error))]) from error
        try:
            source = self.source_for(config)
        except ValueError as error:
            raise ValidationError([FieldError("scheduler.carbonTarget", str(error))]) from error
        policy = self.policy_for(config.scheduler.policy)
        key = f"{namespace}/{name}"
        with self._lock:
            session = self._sessions.get(key)
            created = session is None
            if created:
                session = Session(namespace=namespace, name=name, config=config, source=source, policy=policy,
                                  forecaster=self.forecaster, metrics=self.metrics)
                self._sessions[key] = session
        if not created:
            session.reconfigure(config=config, source=source, policy=policy)
        if created:
            log.info("session created schedule=%s policy=%s carbonTarget=%r", key,
                     config.scheduler.policy, config.scheduler.carbon_target)
        if config.state:
            session.restore(config.state, wall_now=self.config.clock())
        return session


def check_state(config: ScheduleConfig) -> None:
    """Raise ValueError when a stored state cannot be restored, before anything changes."""
    state = config.state or {}
    ledger_state = state.get("ledger") or {}
    if not isinstance(ledger_state, dict):
        raise ValueError("state.ledger must be a JSON object")
    spec = config.scheduler
    scratch = CreditLedger(target_error=spec.target_error, credit_min=spec.credit_min,
                           credit_max=spec.credit_max, window=spec.credit_window)
    try:
        scratch.from_state(ledger_state)
        manual_from_state(state, wall_now=datetime.now(UTC))
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"state cannot be restored: {error}") from error
