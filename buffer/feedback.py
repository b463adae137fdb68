"""Reporting served requests to the engine so its credit ledger follows real traffic.

The consumer calls `FeedbackReporter.record(flavour)` for every request it
completed with a status below 500. A daemon thread posts the counts gathered since the last report to
`POST /feedback/<ns>/<name>` as `{"counts": {"<flavour name>": n}}` every
`feedback_interval` seconds. Counts that fail to post are put back and go out
with the next report, so an engine outage delays feedback but loses none of it
while the process lives.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import requests

from buffer import metrics
from buffer.config import BufferConfig

log = logging.getLogger(__name__)


class FeedbackReporter:
    """Per-flavour counts of completed requests, posted to the engine periodically."""

    def __init__(self, config: BufferConfig, *, session: requests.Session | None = None) -> None:
        self._config = config
        self._session = session or requests.Session()
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, flavour: str, count: int = 1) -> None:
        with self._lock:
            self._pending[flavour] += count

    @property
    def pending(self) -> dict[str, int]:
        with self._lock:
            return dict(self._pending)

    def flush(self) -> bool:
        """Post the pending counts once; on failure keep them for the next report."""
        with self._lock:
            counts, self._pending = self._pending, Counter()
        if not counts or not self._config.engine_url:
            self._restore(counts)
            return not counts
        url = f"{self._config.engine_url}/feedback/{self._config.namespace}/{self._config.schedule_name}"
        try:
            reply = self._session.post(url, json={"counts": dict(counts)}, timeout=5.0)
            reply.raise_for_status()
        except requests.RequestException as error:
            self._restore(counts)
            metrics.CONSUMER_FEEDBACK_POSTS.labels(outcome="failed").inc()
            log.warning(
                "event=feedback_failed schedule=%s url=%s kept=%s error=%r",
                self._config.schedule_key,
                url,
                dict(counts),
                str(error)[:200],
            )
            return False
        metrics.CONSUMER_FEEDBACK_POSTS.labels(outcome="ok").inc()
        log.debug("event=feedback_posted schedule=%s counts=%s", self._config.schedule_key, dict(counts))
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="feedback-reporter", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and make a last attempt to post what is pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._config.feedback_interval):
            self.flush()

    def _restore(self, counts: Counter[str]) -> None:
        with self._lock:
            self._pending.update(counts)
