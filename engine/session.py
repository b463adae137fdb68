"""Scheduling sessions: one per TrafficSchedule, holding its configuration, ledger and decision.

A session evaluates its policy lazily: `decision(now)` returns the cached
decision until its `validUntil`, then evaluates again. A decision is valid for
`validFor` at most and, when carbon data is available, not past the end of the
current carbon slot, so a new slot brings a fresh decision. Two exceptions:
a stale snapshot whose first slot already ended leaves only `validFor`, and
every decision is valid for at least one second. The slot end is mapped to
wall-clock time, which matters when a trace is replayed faster than real time.

Safe decision without carbon data: when the carbon source has no usable data
(or its last good data is older than the source's staleness limit), the
snapshot has `available=False` and every policy decides carbon-blind. For the
credit-based policies that is the static mix that meets `targetError`
exactly, corrected by the credit balance. The throttle is 1.0 so no capacity
is withheld on a guess.

Time: the ledger, demand history and policy see *source time* (the carbon
source's clock, equal to wall-clock time except for a replayed trace), so
quality windows line up with carbon slots. `validUntil` and manual overrides
are wall-clock time.

Every public method takes the session lock, so gunicorn threads may share a
session.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta

from engine.decision import Decision, ManualOverride, render_decision
from engine.demand import DemandHistory
from engine.evaluation.demand import DemandErrorTracker
from engine.ledger import CreditLedger, parse_time, window_start_for
from engine.manual import ManualDecision
from engine.model import SLOT, CarbonSnapshot, PolicyContext
from engine.policies import integer_weights
from engine.policies.allocation import budget_allowance, ordered_enabled, shares_for_allowance
from engine.policies.base import Policy, PolicyResult
from engine.policies.forecast_optimal import plan_throttle_thresholds
from engine.throttle import Throttle, compute_throttle, replica_ceilings
from engine.validation import ScheduleConfig

log = logging.getLogger(__name__)

MIN_VALIDITY = timedelta(seconds=1)
SNAPSHOT_HORIZON = timedelta(hours=48)


class Session:
    """The scheduling state of one TrafficSchedule (`namespace/name`)."""

    def __init__(self, *, namespace: str, name: str, config: ScheduleConfig, source, policy: Policy,
                 forecaster=None, metrics=None) -> None:
        self.namespace = namespace
        self.name = name
        self.key = f"{namespace}/{name}"
        self.lock = threading.RLock()
        self.metrics = metrics
        spec = config.scheduler
        self.ledger = CreditLedger(target_error=spec.target_error, credit_min=spec.credit_min,
                                   credit_max=spec.credit_max, window=spec.credit_window)
        self.demand = DemandHistory(forecaster=forecaster)
        # How wrong past demand forecasts were; forecast-optimal widens its hedge by it.
        self.demand_errors = DemandErrorTracker(window=spec.credit_window)
        self._demand_slot: datetime | None = None
        self.evaluations = 0
        self.manual: ManualOverride | None = None
        self.current: Decision | None = None
        self.previous_key: tuple | None = None
        self.emissions = {"windowStart": None, "emitted": 0.0, "baseline": 0.0, "planned": 0.0}
        self._apply(config=config, source=source, policy=policy)

    # Configuration and restoration

    def reconfigure(self, *, config: ScheduleConfig, source, policy: Policy) -> None:
        """Apply a new configuration; the ledger keeps its balance, the cached decision is dropped."""
        with self.lock:
            spec = config.scheduler
            self.ledger.reconfigure(target_error=spec.target_error, credit_min=spec.credit_min,
                                    credit_max=spec.credit_max, window=spec.credit_window)
            if spec.credit_window != self.config.scheduler.credit_window:
                self.demand_errors = DemandErrorTracker(window=spec.credit_window)
                self._demand_slot = None
            old_names = {flavour.name for flavour in self.config.flavours}
            self._apply(config=config, source=source, policy=policy)
            if self.metrics is not None and old_names != {flavour.name for flavour in config.flavours}:
                self.metrics.forget_flavours(self.key)

    def _apply(self, *, config: ScheduleConfig, source, policy: Policy) -> None:
        self.config = config
        self.source = source
        self.policy = policy
        self.current = None
        if self.manual is not None:
            known = {flavour.name for flavour in config.enabled_flavours}
            if any(weight and name not in known for name, weight in self.manual.weights.items()):
                log.info("manual decision dropped schedule=%s reason=flavours changed", self.key)
                self.manual = None

    def restore(self, state: dict, *, wall_now: datetime) -> bool:
        """Restore the ledger from a stored `state` unless the in-memory ledger is newer.

        A running manual override and the last decision's weights (for change
        logging) are restored only into a session that has not evaluated yet,
        which is the restart case. A live session already stores its own
        override, and an override it cleared must not come back from an older
        status.
        Returns True when anything changed. Raises ValueError on a malformed
        state before changing anything.
        """
        with self.lock:
            ledger_state = state.get("ledger") or {}
            if not isinstance(ledger_state, dict):
                raise ValueError("state.ledger must be a JSON object")
            stored_at = parse_time(ledger_state["updatedAt"]) if ledger_state.get("updatedAt") else None
            fresh = self.evaluations == 0
            manual = manual_from_state(state, wall_now=wall_now) if fresh else None
            if manual is not None and not manual_fits(manual, self.config):
                log.info("stored manual decision ignored schedule=%s reason=flavours changed", self.key)
                manual = None
            if fresh and self.previous_key is None:
                self.previous_key = decision_key_from_state(state)

            in_memory_newer = self.ledger.updated_at is not None and (
                stored_at is None or stored_at <= self.ledger.updated_at)
            if in_memory_newer:
                log.debug("stored state ignored schedule=%s reason=in-memory ledger is newer", self.key)
                return False
            before = self.ledger.to_state()
            if ledger_state:
                self.ledger.from_state(ledger_state)
            if manual is not None and self.manual is None:
                self.manual = manual
            changed = self.ledger.to_state() != before or self.manual is manual is not None
            if changed:
                self.current = None
                log.info("state restored schedule=%s balance=%.4f updatedAt=%s manualUntil=%s", self.key,
                         self.ledger.balance, ledger_state.get("updatedAt"),
                         manual.until.isoformat() if manual else None)
            return changed

    # Requests

    def decision(self, *, wall_now: datetime) -> dict:
        """Return the current decision JSON, evaluating again if the cached one expired."""
        with self.lock:
            if self.manual is not None and wall_now >= self.manual.until:
                log.info("manual decision expired schedule=%s until=%s", self.key, self.manual.until)
                self.manual = None
                self.current = None
            if self.current is None or wall_now >= self.current.valid_until:
                self._evaluate(wall_now)
            return self._render()

    def set_manual(self, manual: ManualDecision, *, wall_now: datetime) -> dict:
        """Install a manual decision that overrides the policy for its TTL."""
        with self.lock:
            self.manual = ManualOverride(weights=dict(manual.weights), until=wall_now + manual.ttl,
                                         throttle=manual.throttle)
            log.info("manual decision set schedule=%s until=%s weights=%s", self.key,
                     self.manual.until.isoformat(), self.manual.weights)
            self._evaluate(wall_now)
            return self._render()

    def clear_manual(self, *, wall_now: datetime) -> dict:
        with self.lock:
            if self.manual is not None:
                log.info("manual decision cleared schedule=%s", self.key)
            self.manual = None
            self._evaluate(wall_now)
            return self._render()

    def feedback(self, counts: dict[str, float], *, wall_now: datetime) -> dict:
        """Record served requests per flavour into the ledger, the demand history and the emissions."""
        with self.lock:
            source_now = self.source.source_now(wall_now)
            by_name = {flavour.name: flavour for flavour in self.config.flavours}
            requests = sum(counts.values())
            precision_sum = sum(count * by_name[name].precision for name, count in counts.items())
            balance = self.ledger.record(now=source_now, requests=requests, precision_sum=precision_sum)
            self.demand.add(now=source_now, requests=requests)
            self._add_emissions(counts, source_now=source_now)
            if self.metrics is not None:
                self.metrics.observe_credits(self.key, balance)
            log.debug("feedback schedule=%s requests=%s balance=%.4f", self.key, requests, balance)
            return {"accepted": requests, "credits": self._credits()}

    # Evaluation

    def _evaluate(self, wall_now: datetime) -> None:
        source_now = self.source.source_now(wall_now)
        carbon = self.source.snapshot(wall_now, horizon=SNAPSHOT_HORIZON)
        spec = self.config.scheduler

        if self.manual is not None:
            weights, diagnostics, policy_name = dict(self.manual.weights), {"manual": True}, "manual"
        else:
            result = self._run_policy(carbon, source_now=source_now)
            enabled = [flavour.name for flavour in ordered_enabled(self.config.flavours)]
            weights = integer_weights(result.shares, enabled)
            weights = {flavour.name: weights.get(flavour.name, 0) for flavour in self.config.flavours}
            diagnostics, policy_name = result.diagnostics, spec.policy
        self.evaluations += 1

        throttle = self._throttle(carbon, diagnostics=diagnostics)
        if self.manual is not None and self.manual.throttle is not None:
            throttle = Throttle(throttle=self.manual.throttle, credits_ratio=throttle.credits_ratio,
                                intensity_ratio=throttle.intensity_ratio)
        ceilings = replica_ceilings(self.config.bounds, throttle=throttle.throttle)
        decision = Decision(policy=policy_name, weights=weights, throttle=throttle, ceilings=ceilings,
                            carbon=carbon, evaluated_at=wall_now,
                            valid_until=self._valid_until(carbon, wall_now=wall_now,
                                                          source_now=source_now),
                            diagnostics=diagnostics, manual=self.manual)
        self._publish(decision)

    def _run_policy(self, carbon: CarbonSnapshot, *, source_now: datetime) -> PolicyResult:
        spec = self.config.scheduler
        options = dict(spec.options)
        options["windowEmissions"] = self._window_emissions(source_now)
        demand = self.demand.forecast(now=source_now, slots=len(carbon.slots), key=self.key)
        self._track_demand_error(source_now, demand=demand, carbon=carbon)
        options.update(self.demand_errors.options())
        ctx = PolicyContext(
            flavours=self.config.flavours, carbon=carbon, ledger=self.ledger.view(source_now),
            now=source_now, demand=demand,
            window=spec.credit_window, intensity_floor=spec.throttle_intensity_floor,
            intensity_ceiling=spec.throttle_intensity_ceiling, evaluation=self.evaluations, options=options)
        try:
            return self.policy.decide(ctx)
        except Exception as error:  # noqa: BLE001 - a policy bug must not take the schedule down
            log.exception("policy failed schedule=%s policy=%s error=%r", self.key, spec.policy, error)
            enabled = ordered_enabled(self.config.flavours)
            allowance = budget_allowance(enabled, target_error=spec.target_error)
            return PolicyResult(shares=shares_for_allowance(enabled, allowance=allowance),
                                diagnostics={"policyError": repr(error), "fallback": "target mix"})

    def _track_demand_error(self, source_now: datetime, *, demand: tuple[float, ...],
                            carbon: CarbonSnapshot) -> None:
        """Compare past demand forecasts with the slots served since, once per slot."""
        slot_start = window_start_for(source_now, SLOT)
        if slot_start == self._demand_slot:
            return
        if self._demand_slot is not None:
            for requests in self.demand.completed_between(start=self._demand_slot, end=slot_start):
                self.demand_errors.observe(requests)
        self.demand_errors.expect(now=source_now, demand=demand, slots=carbon.slots)
        self._demand_slot = slot_start

    def _throttle(self, carbon: CarbonSnapshot, *, diagnostics: dict) -> Throttle:
        """Compute the throttle, with its intensity band made consistent with a plan.

        A policy that plans the window (forecast-optimal) reports the slot's
        place in its plan. In a slot the plan keeps fully precise, or below
        the intensity where the plan starts to downgrade, holding back
        processing would cost latency in a slot the plan deems clean.
        """
        spec = self.config.scheduler
        available = carbon.available
        floor, ceiling = plan_throttle_thresholds(
            diagnostics, floor=spec.throttle_intensity_floor, ceiling=spec.throttle_intensity_ceiling)
        if floor != spec.throttle_intensity_floor:
            diagnostics["throttleIntensityFloor"] = round(floor, 3) if math.isfinite(floor) else None
        return compute_throttle(
            balance=self.ledger.balance, credit_min=spec.credit_min, credit_max=spec.credit_max,
            intensity_now=carbon.current if available else None,
            intensity_next=carbon.next if available else None,
            floor=floor, ceiling=ceiling,
            throttle_min=spec.throttle_min)

    def _valid_until(self, carbon: CarbonSnapshot, *, wall_now: datetime,
                     source_now: datetime) -> datetime:
        until = wall_now + self.config.scheduler.valid_for
        if carbon.available and carbon.slots:
            scale = carbon.time_scale if carbon.time_scale > 0 else 1.0
            slot_left = (carbon.slots[0].end - source_now) / scale
            # A stale snapshot may start with a slot that already ended; then only validFor applies,
            # instead of re-evaluating every second until fresh data arrives.
            if slot_left > timedelta(0):
                until = min(until, wall_now + slot_left)
        if self.manual is not None:
            until = min(until, self.manual.until)
        return max(until, wall_now + MIN_VALIDITY)

    def _publish(self, decision: Decision) -> None:
        key = decision.change_key()
        changed = key != self.previous_key
        if changed:
            log.info("decision changed schedule=%s policy=%s weights=%s throttle=%.3f ceilings=%s "
                     "intensity=%s stale=%s", self.key, decision.policy, decision.weights,
                     decision.throttle.throttle, decision.ceilings, decision.carbon.current,
                     decision.carbon.stale)
        self.previous_key = key
        self.current = decision
        if self.metrics is not None:
            self.metrics.observe_decision(self.key, decision, balance=self.ledger.balance,
                                          changed=changed)

    # Emissions so far in the quality window (for forecast-aware-global)

    def _add_emissions(self, counts: dict[str, float], *, source_now: datetime) -> None:
        carbon = self.current.carbon if self.current is not None else None
        intensity = carbon.current if carbon is not None and carbon.available else None
        enabled = ordered_enabled(self.config.flavours)
        if intensity is None or not enabled:
            return
        self._window_emissions(source_now)
        by_name = {flavour.name: flavour for flavour in self.config.flavours}
        top = enabled[0]
        allowance = budget_allowance(enabled, target_error=self.config.scheduler.target_error)
        planned_mix = shares_for_allowance(enabled, allowance=allowance)
        planned_energy = sum(share * by_name[name].energy for name, share in planned_mix.items())
        requests = sum(counts.values())
        self.emissions["emitted"] += intensity * sum(c * by_name[n].energy for n, c in counts.items())
        self.emissions["baseline"] += intensity * requests * top.energy
        self.emissions["planned"] += intensity * requests * planned_energy

    def _window_emissions(self, source_now: datetime) -> dict:
        start = self.ledger.view(source_now).window_start
        if self.emissions["windowStart"] != start:
            self.emissions = {"windowStart": start, "emitted": 0.0, "baseline": 0.0, "planned": 0.0}
        return {key: value for key, value in self.emissions.items() if key != "windowStart"}

    def _credits(self) -> dict:
        return {"balance": round(self.ledger.balance, 6), "velocity": round(self.ledger.velocity, 6),
                "target": self.ledger.target_error, "min": self.ledger.credit_min,
                "max": self.ledger.credit_max, "updatedAt": self.ledger.to_state()["updatedAt"]}

    def _render(self) -> dict:
        return render_decision(self.current, namespace=self.namespace, name=self.name,
                               flavours=self.config.flavours, ledger=self.ledger,
                               evaluator=self.config.scheduler.evaluator)


def manual_from_state(state: dict, *, wall_now: datetime) -> ManualOverride | None:
    """Read a still-running manual override from stored state; expired ones are dropped.

    The override is `state.manual`, or `state.lastDecision.state.manual` when the
    caller stored the whole last decision instead.
    """
    manual = state.get("manual")
    last_decision = state.get("lastDecision")
    if manual is None and isinstance(last_decision, dict):
        manual = (last_decision.get("state") or {}).get("manual")
    if not isinstance(manual, dict) or not manual.get("until"):
        return None
    until = parse_time(str(manual["until"]))
    weights = manual.get("flavourWeights") or {}
    if until <= wall_now or not isinstance(weights, dict):
        return None
    throttle = manual.get("throttle")
    return ManualOverride(weights={str(k): int(v) for k, v in weights.items()}, until=until,
                          throttle=None if throttle is None else float(throttle))


def decision_key_from_state(state: dict) -> tuple | None:
    """Return the change key of a stored last decision, or None when it is missing or malformed."""
    last = state.get("lastDecision")
    if not isinstance(last, dict):
        return None
    try:
        weights = {str(name): int(weight) for name, weight in (last.get("flavourWeights") or {}).items()}
        ceilings = {str(name): int(value)
                    for name, value in ((last.get("processing") or {}).get("ceilings") or {}).items()}
    except (TypeError, ValueError, AttributeError):
        return None
    return (last.get("policy"), tuple(sorted(weights.items())), tuple(sorted(ceilings.items())))


def manual_fits(manual: ManualOverride, config: ScheduleConfig) -> bool:
    """Return True when the override's weights cover only enabled flavours and sum to 100."""
    enabled = {flavour.name for flavour in config.enabled_flavours}
    weights_ok = all(weight == 0 or name in enabled for name, weight in manual.weights.items())
    return weights_ok and sum(manual.weights.values()) == 100
