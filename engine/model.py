"""Value types shared by the engine's policies, ledger, carbon sources and planner.

Everything here is plain data with no I/O, so policies and the planner can be
tested without Flask, a network or a clock. Precision is a fraction in 0.0-1.0
inside the engine; the HTTP API speaks 0-100 and converts at its edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

SLOT = timedelta(minutes=30)


@dataclass(frozen=True)
class Flavour:
    """One variant of the service: the same API at a given precision and energy cost."""

    name: str
    precision: float  # 0.0-1.0, 1.0 = exact
    energy: float = 1.0  # energy per request relative to the most precise flavour
    enabled: bool = True


@dataclass(frozen=True)
class CarbonSlot:
    """Grid carbon intensity over one slot [start, end), in gCO2/kWh."""

    start: datetime
    end: datetime
    intensity: float
    actual: bool = False  # True when the value is measured, False when forecast


@dataclass(frozen=True)
class CarbonSnapshot:
    """Grid carbon data available to the engine at one moment.

    `slots` starts with the slot containing `now` and runs forward in time.
    `available` is False when no usable data exists; policies must then fall
    back to a carbon-blind safe decision. `stale` is True when the data is the
    last good forecast kept after the provider failed.
    """

    now: datetime
    slots: tuple[CarbonSlot, ...] = ()
    source: str = "none"
    stale: bool = False
    available: bool = True
    index: str | None = None  # GB-style band: very low, low, moderate, high, very high
    message: str = ""
    # Source seconds per wall-clock second: 1.0 for live data, the speed-up
    # factor for a replayed trace. `now` and slot times are in source time.
    time_scale: float = 1.0

    @property
    def current(self) -> float | None:
        return self.slots[0].intensity if self.slots else None

    @property
    def next(self) -> float | None:
        if len(self.slots) > 1:
            return self.slots[1].intensity
        return self.current


@dataclass(frozen=True)
class LedgerView:
    """Read-only view of a schedule's credit ledger, as policies see it.

    Quality windows are fixed intervals of `PolicyContext.window` aligned to
    the Unix epoch (UTC midnight for 24 h). `window_requests` and
    `window_precision_sum` cover the current window from `window_start` to
    now, so a planner can compute the precision already delivered in it:
    window_precision_sum / window_requests.
    """

    balance: float = 0.0
    velocity: float = 0.0
    credit_min: float = -1.0
    credit_max: float = 1.0
    target_error: float = 0.1
    window_start: datetime | None = None
    window_requests: float = 0.0
    window_precision_sum: float = 0.0


@dataclass(frozen=True)
class PolicyContext:
    """Everything a policy may read to choose weights for the current slot."""

    flavours: tuple[Flavour, ...]
    carbon: CarbonSnapshot
    ledger: LedgerView
    now: datetime
    # Expected requests per slot, aligned with carbon.slots; empty when unknown.
    demand: tuple[float, ...] = ()
    # Quality window length; the planner plans up to its end.
    window: timedelta = timedelta(hours=24)
    # Thresholds of the throttle, in gCO2/kWh, for policies that reason about them.
    intensity_floor: float = 50.0
    intensity_ceiling: float = 300.0
    # Counter that advances once per evaluation (round-robin reads it).
    evaluation: int = 0
    # Free-form per-policy options from the schedule spec.
    options: dict = field(default_factory=dict)
