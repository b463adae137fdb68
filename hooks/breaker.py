"""A circuit breaker between the sync hook and an unreachable engine.

Each sync makes one engine call bounded by HOOKS_ENGINE_TIMEOUT (3 s). When
the engine is black-holed, every call waits the whole timeout, so a burst of
syncs queues behind the hooks' few threads: 12 syncs on 4 threads took 3, 6
and 9 s, close to Metacontroller's 10 s hook timeout. After a timeout or a
failed connection the breaker opens for `cooldown_seconds`. While it is open,
calls raise `EngineCallSkipped` at once and the sync renders from the last
decision stored in the status, as for any other engine outage. The first call
after the cooldown probes the engine while concurrent calls are still
skipped. A probe that succeeds closes the breaker, one that fails opens it
again.

Only network failures open the breaker. An engine that responds, even with an
HTTP 500 or a 400 rejection, is reachable, and the next schedule's call may
well succeed. The breaker is shared by all schedules in one hooks process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hooks.engine_client import EngineCallSkipped, EngineClient, EngineUnavailable

log = logging.getLogger("hooks.breaker")


class EngineCircuitBreaker:
    """Engine client wrapper that skips engine calls for a while after the engine was unreachable."""

    def __init__(self, engine: EngineClient, *, cooldown_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.cooldown_seconds = cooldown_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failure: str | None = None  # the error that opened the breaker; None while closed
        self._open_until = 0.0
        self._probing = False

    def put_config(self, namespace: str, name: str, configuration: dict) -> dict:
        probe = self._admit()
        failure = None
        try:
            return self.engine.put_config(namespace, name, configuration)
        except EngineUnavailable as error:
            if error.unreachable:
                failure = str(error)
            raise
        finally:
            self._settle(failure, probe=probe)

    def _admit(self) -> bool:
        """Return whether this call is the probe of a breaker that was open; raise if it is skipped."""
        with self._lock:
            if self._failure is None or self.cooldown_seconds <= 0:
                return False
            if self._monotonic() < self._open_until or self._probing:
                # The message names no remaining time, so repeated syncs write the same status.
                raise EngineCallSkipped(
                    f"engine not called: {self._failure} less than {self.cooldown_seconds:g} s ago",
                    unreachable=True)
            self._probing = True
            return True

    def _settle(self, failure: str | None, *, probe: bool) -> None:
        with self._lock:
            if probe:
                self._probing = False
            if failure is not None:
                if self._failure is None:
                    log.warning(
                        "event=engine-calls-paused seconds=%g error=%s", self.cooldown_seconds, failure
                    )
                self._failure = failure
                self._open_until = self._monotonic() + self.cooldown_seconds
            elif self._failure is not None:
                log.info("event=engine-calls-resumed")
                self._failure = None
