"""Slot-by-slot replay of one policy, and the two reference plans, over a carbon trace.

A policy run behaves like the engine with a perfectly obedient router:

- the policy decides every `interval` and at every slot start, because the
  engine's decisions expire when their slot ends. It reads the snapshot of
  `TraceKnowledge`, the credit ledger's view and the demand forecast. The
  engine's `integer_weights` turn its shares into the percentages the router
  serves;
- each tick (the greatest common divisor of the interval and a slot) serves
  the demand of that tick with the current weights and charges emissions with
  the slot's actual intensity. It then feeds the realised requests and
  precision to the ledger, as the consumer's feedback would.

The references need no replay: `optimum` is the perfect-foresight plan of each
quality window on actual intensities (the planner is exact for that linear
program) and `constant-mix` is the carbon-blind static mix that just meets the
target, both served as exact fractions.

Emissions are in gCO2/kWh times relative energy per request, so only ratios
between rows mean anything.
"""

from __future__ import annotations

import inspect
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from engine.carbon.trace import Trace
from engine.evaluation.demand import DemandErrorTracker, demand_forecast
from engine.evaluation.replay import TraceKnowledge
from engine.ledger import CreditLedger, window_start_for
from engine.model import SLOT, Flavour, PolicyContext
from engine.planner import plan_window, static_mix
from engine.policies import POLICIES, integer_weights

DEMAND_SHAPES = ("flat", "daily")
SLOTS_PER_DAY = 48


@dataclass(frozen=True)
class Scenario:
    """Everything a replay needs besides the trace: flavours, target, window, demand and engine settings."""

    flavours: tuple[Flavour, ...]
    target_error: float
    window: timedelta = timedelta(hours=24)
    demand: tuple[float, ...] = (1000.0,) * SLOTS_PER_DAY  # requests per slot, by half hour of the UTC day
    interval: timedelta = SLOT
    credit_min: float = -0.5
    credit_max: float = 0.5
    intensity_floor: float = 100.0
    intensity_ceiling: float = 250.0
    options: dict = field(default_factory=dict)
    seed: int = 0
    demand_forecast: str = "exact"  # one of engine.evaluation.demand.DEMAND_FORECASTS

    def slot_demand(self, start: datetime) -> float:
        """Return the requests expected in the slot starting at `start`."""
        index = int((start - start.replace(hour=0, minute=0, second=0, microsecond=0)) // SLOT)
        return self.demand[index % len(self.demand)]


@dataclass
class Outcome:
    """Per-slot requests, precision sum and emissions of one row of the evaluation."""

    name: str
    kind: str  # "policy" or "reference"
    requests: np.ndarray
    precision_sum: np.ndarray
    emissions: np.ndarray
    seconds: float = 0.0


def demand_profile(shape: str, *, requests_per_slot: float) -> tuple[float, ...]:
    """Return requests per slot for each half hour of the UTC day, with the given mean.

    `daily` is a smooth day curve, lowest at 04:00 UTC (0.4 of the mean) and
    highest at 16:00 UTC (1.6 of the mean).
    """
    if shape not in DEMAND_SHAPES:
        raise ValueError(f"invalid demand shape {shape!r}: expected one of {', '.join(DEMAND_SHAPES)}")
    if not math.isfinite(requests_per_slot) or requests_per_slot <= 0:
        raise ValueError(f"invalid requests per slot {requests_per_slot!r}: expected a number > 0")
    if shape == "flat":
        return (float(requests_per_slot),) * SLOTS_PER_DAY
    hours = [index / 2 + 0.25 for index in range(SLOTS_PER_DAY)]
    return tuple(requests_per_slot * (1 - 0.6 * math.cos(2 * math.pi * (hour - 4) / 24)) for hour in hours)


def ordered_names(flavours: Sequence[Flavour]) -> list[str]:
    """Return enabled flavour names, most precise first and cheapest first among equals."""
    enabled = sorted((f for f in flavours if f.enabled), key=lambda f: (-f.precision, f.energy))
    return [flavour.name for flavour in enabled]


def make_policy(name: str, *, seed: int):
    """Instantiate a registered policy; a policy that takes a random generator gets a seeded one."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}: expected one of {', '.join(sorted(POLICIES))}")
    policy_class = POLICIES[name]
    if "rng" in inspect.signature(policy_class.__init__).parameters:
        return policy_class(rng=random.Random(seed))
    return policy_class()


def run_policy(name: str, *, trace: Trace, knowledge: TraceKnowledge, scenario: Scenario) -> Outcome:
    """Replay one policy over the whole trace; see the module docstring for the rules.

    The body is one loop over ticks with its bookkeeping inline, because
    splitting it would pass a dozen running totals between helpers.
    """
    started = time.perf_counter()
    policy = make_policy(name, seed=scenario.seed)
    ledger = CreditLedger(target_error=scenario.target_error, credit_min=scenario.credit_min,
                          credit_max=scenario.credit_max, window=scenario.window)
    names = ordered_names(scenario.flavours)
    precision = {f.name: f.precision for f in scenario.flavours}
    energy = {f.name: f.energy for f in scenario.flavours}
    tick = _tick_length(scenario.interval)
    ticks_per_slot = SLOT // tick
    count = len(trace.actuals)
    requests, precision_sum, emissions = np.zeros(count), np.zeros(count), np.zeros(count)
    window_emissions = WindowEmissions(scenario)
    demand_error = DemandErrorTracker(window=scenario.window)

    weights: dict[str, int] = {}
    evaluations = 0
    for slot in range(count):
        slot_start = trace.first + SLOT * slot
        for step in range(ticks_per_slot):
            now = slot_start + tick * step
            carbon = knowledge.snapshot(now)

            # Decide at every evaluation instant and, like the engine whose decisions are valid
            # until the slot ends at most, at every slot start. In between the weights stay.
            if step == 0 or (now - trace.first) % scenario.interval == timedelta(0):
                demand = demand_forecast(scenario.demand_forecast, slots=carbon.slots,
                                         profile=scenario.slot_demand, served=requests, current=slot,
                                         first=trace.first)
                if step == 0:
                    demand_error.expect(now=now, demand=demand, slots=carbon.slots)
                options = {"windowEmissions": window_emissions.totals(now), **demand_error.options(),
                           **scenario.options}
                ctx = PolicyContext(
                    flavours=scenario.flavours, carbon=carbon, ledger=ledger.view(now), now=now,
                    demand=demand, window=scenario.window, intensity_floor=scenario.intensity_floor,
                    intensity_ceiling=scenario.intensity_ceiling, evaluation=evaluations, options=options)
                weights = integer_weights(policy.decide(ctx).shares, names)
                evaluations += 1

            # Serve the tick's demand with the weights in force and feed the ledger back.
            served = scenario.slot_demand(slot_start) / ticks_per_slot
            mix_precision = sum(weights[n] * precision[n] for n in names) / 100
            mix_energy = sum(weights[n] * energy[n] for n in names) / 100
            requests[slot] += served
            precision_sum[slot] += served * mix_precision
            emissions[slot] += served * trace.actuals[slot] * mix_energy
            ledger.record(now=now, requests=served, precision_sum=served * mix_precision)
            window_emissions.add(now=now, requests=served, intensity=carbon.current, mix_energy=mix_energy)
        demand_error.observe(requests[slot])

    return Outcome(name=name, kind="policy", requests=requests, precision_sum=precision_sum,
                   emissions=emissions, seconds=time.perf_counter() - started)


class WindowEmissions:
    """Emissions so far in the quality window, as the engine hands them to policies in the options.

    `emitted` uses the mix served, `baseline` the most precise flavour and
    `planned` the carbon-blind static mix, all with the intensity the engine saw.
    """

    def __init__(self, scenario: Scenario) -> None:
        names = ordered_names(scenario.flavours)
        energy = {f.name: f.energy for f in scenario.flavours}
        mix = static_mix(flavours=scenario.flavours, target_error=scenario.target_error)
        self._top_energy = energy[names[0]]
        self._planned_energy = sum(share * energy[name] for name, share in mix.items())
        self._window = scenario.window
        self._start: datetime | None = None
        self._totals = {"emitted": 0.0, "baseline": 0.0, "planned": 0.0}

    def totals(self, now: datetime) -> dict[str, float]:
        self._roll(now)
        return dict(self._totals)

    def add(self, *, now: datetime, requests: float, intensity: float | None, mix_energy: float) -> None:
        self._roll(now)
        if intensity is None:
            return
        self._totals["emitted"] += requests * intensity * mix_energy
        self._totals["baseline"] += requests * intensity * self._top_energy
        self._totals["planned"] += requests * intensity * self._planned_energy

    def _roll(self, now: datetime) -> None:
        start = window_start_for(now, self._window)
        if start != self._start:
            self._start = start
            self._totals = dict.fromkeys(self._totals, 0.0)


def run_optimum(*, trace: Trace, scenario: Scenario) -> Outcome:
    """Plan every quality window with perfect foresight of actual intensity and demand."""
    started = time.perf_counter()
    starts = [trace.first + SLOT * slot for slot in range(len(trace.actuals))]
    demand = [scenario.slot_demand(start) for start in starts]
    shares: list[dict[str, float]] = []
    for window in _window_slices(starts, window=scenario.window):
        plan = plan_window(flavours=scenario.flavours, intensities=trace.actuals[window],
                           demand=demand[window], target_error=scenario.target_error)
        shares.extend(plan.shares)
    return _reference_outcome("optimum", trace=trace, scenario=scenario, demand=demand, shares=shares,
                              started=started)


def run_constant_mix(*, trace: Trace, scenario: Scenario) -> Outcome:
    """Serve the carbon-blind static mix that just meets the target in every slot."""
    started = time.perf_counter()
    demand = [scenario.slot_demand(trace.first + SLOT * slot) for slot in range(len(trace.actuals))]
    mix = static_mix(flavours=scenario.flavours, target_error=scenario.target_error)
    return _reference_outcome("constant-mix", trace=trace, scenario=scenario, demand=demand,
                              shares=[mix] * len(demand), started=started)


def baseline_emissions(*, trace: Trace, scenario: Scenario) -> float:
    """Return the emissions of sending every request to the most precise flavour (the p100 mix)."""
    energy = {f.name: f.energy for f in scenario.flavours}[ordered_names(scenario.flavours)[0]]
    return math.fsum(scenario.slot_demand(trace.first + SLOT * slot) * intensity * energy
                     for slot, intensity in enumerate(trace.actuals))


def _reference_outcome(name: str, *, trace: Trace, scenario: Scenario, demand: list[float],
                       shares: list[dict[str, float]], started: float) -> Outcome:
    precision = {f.name: f.precision for f in scenario.flavours}
    energy = {f.name: f.energy for f in scenario.flavours}
    requests = np.array(demand, dtype=float)
    mix_precision = np.array([sum(s * precision[n] for n, s in slot.items()) for slot in shares])
    mix_energy = np.array([sum(s * energy[n] for n, s in slot.items()) for slot in shares])
    return Outcome(name=name, kind="reference", requests=requests, precision_sum=requests * mix_precision,
                   emissions=requests * np.array(trace.actuals) * mix_energy,
                   seconds=time.perf_counter() - started)


def _window_slices(starts: list[datetime], *, window: timedelta) -> list[slice]:
    """Split slot start times into runs that share one epoch-aligned quality window."""
    slices: list[slice] = []
    first = 0
    for index in range(1, len(starts) + 1):
        if index == len(starts) or window_start_for(starts[index], window) != window_start_for(
                starts[first], window):
            slices.append(slice(first, index))
            first = index
    return slices


def window_slices(trace: Trace, *, window: timedelta) -> list[slice]:
    """Return the slot ranges of the trace that fall in one quality window each."""
    return _window_slices([trace.first + SLOT * slot for slot in range(len(trace.actuals))], window=window)


def _tick_length(interval: timedelta) -> timedelta:
    """Return the longest step that divides both the evaluation interval and a slot."""
    if interval <= timedelta(0):
        raise ValueError(f"invalid evaluation interval {interval}: expected a positive duration")
    interval_seconds = interval.total_seconds()
    if interval_seconds != int(interval_seconds):
        raise ValueError(f"invalid evaluation interval {interval}: expected whole seconds")
    return timedelta(seconds=math.gcd(int(interval_seconds), int(SLOT.total_seconds())))


__all__ = ["UTC", "Outcome", "Scenario", "baseline_emissions", "demand_profile", "run_constant_mix",
           "run_optimum", "run_policy", "window_slices"]
