"""Prometheus metrics of the engine.

Names follow the ones dashboards and KEDA queries already use:
`scheduler_processing_throttle`, `scheduler_effective_replica_ceiling`
(labels schedule, component), `schedule_flavour_weight` (schedule, flavour)
and `scheduler_credit_balance`. Label values come only from configured
schedules (names checked by `PUT /config`), flavours and components, never
from the paths or bodies of other requests. A schedule's old label sets are
removed when its flavours or components change.

Each app owns a `CollectorRegistry`, so several apps (tests) can live in one
process. With `PROMETHEUS_MULTIPROC_DIR` set, gauges are written to files and
`/metrics` merges them with `MultiProcessCollector`. The engine still runs one worker
because sessions live in memory, so multiprocess mode only matters when an
operator raises the worker count.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class EngineMetrics:
    """The engine's gauges and counters, with per-schedule label bookkeeping."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        gauge_options = {"registry": self.registry, "multiprocess_mode": "livemostrecent"}
        self.throttle = Gauge("scheduler_processing_throttle",
                              "Processing throttle of a schedule, 0..1", ["schedule"], **gauge_options)
        self.ceiling = Gauge("scheduler_effective_replica_ceiling",
                             "Replica ceiling of a component after throttling", ["schedule", "component"],
                             **gauge_options)
        self.weight = Gauge("schedule_flavour_weight", "Traffic weight of a flavour, percent",
                            ["schedule", "flavour"], **gauge_options)
        self.balance = Gauge("scheduler_credit_balance", "Credit ledger balance of a schedule",
                             ["schedule"], **gauge_options)
        self.intensity = Gauge("scheduler_carbon_intensity",
                               "Grid carbon intensity seen by a schedule, gCO2/kWh (slot: now or next)",
                               ["schedule", "slot"], **gauge_options)
        self.stale = Gauge("scheduler_carbon_stale",
                           "1 when the schedule's carbon data is stale or unavailable", ["schedule"],
                           **gauge_options)
        self.decisions = Counter("scheduler_decisions_total", "Policy evaluations by schedule and policy",
                                 ["schedule", "policy"], registry=self.registry)
        self.changes = Counter("scheduler_decision_changes_total",
                               "Evaluations whose weights, policy or ceilings changed", ["schedule"],
                               registry=self.registry)
        self.latency = Histogram("engine_http_request_duration_seconds",
                                 "Engine HTTP request latency by route template",
                                 ["route", "method", "status"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self._lock = threading.Lock()
        self._labels: dict[str, dict[str, set]] = {}

    def observe_decision(self, schedule: str, decision, *, balance: float, changed: bool) -> None:
        """Publish a decision's figures for `schedule`, dropping label sets it no longer has."""
        with self._lock:
            known = self._labels.setdefault(schedule, {"flavour": set(), "component": set(), "policy": set()})
            self._replace(self.weight, schedule, known["flavour"], set(decision.weights))
            self._replace(self.ceiling, schedule, known["component"], set(decision.ceilings))
            known["policy"].add(decision.policy)
        for flavour, weight in decision.weights.items():
            self.weight.labels(schedule=schedule, flavour=flavour).set(weight)
        for component, ceiling in decision.ceilings.items():
            self.ceiling.labels(schedule=schedule, component=component).set(ceiling)
        self.throttle.labels(schedule=schedule).set(decision.throttle.throttle)
        self.balance.labels(schedule=schedule).set(balance)
        carbon = decision.carbon
        if carbon.available and carbon.current is not None:
            self.intensity.labels(schedule=schedule, slot="now").set(carbon.current)
            self.intensity.labels(schedule=schedule, slot="next").set(carbon.next)
        self.stale.labels(schedule=schedule).set(0 if carbon.available and not carbon.stale else 1)
        self.decisions.labels(schedule=schedule, policy=decision.policy).inc()
        if changed:
            self.changes.labels(schedule=schedule).inc()

    def observe_credits(self, schedule: str, balance: float) -> None:
        self.balance.labels(schedule=schedule).set(balance)

    def forget_flavours(self, schedule: str) -> None:
        """Drop a schedule's flavour and component label sets; the next decision adds the current ones."""
        with self._lock:
            known = self._labels.get(schedule)
            if not known:
                return
            self._replace(self.weight, schedule, known["flavour"], set())
            self._replace(self.ceiling, schedule, known["component"], set())

    def forget_schedule(self, schedule: str) -> None:
        """Drop every label set of a removed schedule."""
        with self._lock:
            known = self._labels.pop(schedule, None)
            if known is None:
                known = {"flavour": set(), "component": set(), "policy": set()}
            self._replace(self.weight, schedule, known["flavour"], set())
            self._replace(self.ceiling, schedule, known["component"], set())
            self._replace(self.decisions, schedule, known["policy"], set())
        for metric in (self.throttle, self.balance, self.stale, self.changes):
            try:
                metric.remove(schedule)
            except KeyError:
                pass
        for slot in ("now", "next"):
            try:
                self.intensity.remove(schedule, slot)
            except KeyError:
                pass

    def observe_request(self, *, route: str, method: str, status: int, seconds: float) -> None:
        self.latency.labels(route=route, method=method, status=str(status)).observe(seconds)

    def render(self) -> bytes:
        """Return the text exposition; merges worker files in multiprocess mode."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    @staticmethod
    def _replace(metric, schedule: str, known: set, current: set) -> None:
        # NOTE: in multiprocess mode remove() only drops this process's in-memory child; the value
        # already written to PROMETHEUS_MULTIPROC_DIR stays visible until the worker exits.
        for label in known - current:
            try:
                metric.remove(schedule, label)
            except KeyError:
                pass
        known.clear()
        known.update(current)
