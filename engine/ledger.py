"""Credit ledger: the quality balance a schedule has earned or spent.

Each record of served traffic adds `(targetError - realisedError) * sensitivity`
to the balance, so serving above the quality set-point earns credit and
serving below it spends credit. The balance is clamped to
`[credit_min, credit_max]` and its velocity is the mean of the most recent
deltas. Besides the balance, the ledger counts the requests and the precision
delivered in the current quality window (fixed windows aligned to the Unix
epoch), which a planner needs to know how much of the window's error budget is
already used.

State round-trips through `to_state()`/`from_state()` as plain JSON so that the
sync hook can store it in the TrafficSchedule status and hand it back after an
engine restart.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime, timedelta

from engine.model import LedgerView

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_start_for(now: datetime, window: timedelta) -> datetime:
    """Return the start of the epoch-aligned quality window that contains `now`."""
    elapsed = (now - EPOCH) // window
    return EPOCH + elapsed * window


def format_time(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a trailing Z, truncated to whole seconds."""
    # isoformat is several times faster than strftime, which matters for 96 slots per decision.
    return moment.astimezone(UTC).isoformat(timespec="seconds")[:19] + "Z"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (Z or offset, minutes-only accepted) into aware UTC."""
    cleaned = text.strip().replace("z", "Z")
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class CreditLedger:
    """Quality balance of one schedule; not thread-safe, so callers hold the session's lock."""

    def __init__(
        self,
        *,
        target_error: float,
        credit_min: float,
        credit_max: float,
        window: timedelta = timedelta(hours=24),
        sensitivity: float = 1.0,
        history: int = 10,
    ) -> None:
        if not credit_min < credit_max:
            raise ValueError(f"credit_min {credit_min} must be below credit_max {credit_max}")
        if window <= timedelta(0):
            raise ValueError(f"window {window} must be positive")
        self.target_error = target_error
        self.credit_min = credit_min
        self.credit_max = credit_max
        self.window = window
        self.sensitivity = sensitivity
        self.balance = 0.0
        self.velocity = 0.0
        self.updated_at: datetime | None = None
        self._deltas: deque[float] = deque(maxlen=max(1, history))
        self._window_start: datetime | None = None
        self._window_requests = 0.0
        self._window_precision_sum = 0.0

    def reconfigure(self, *, target_error: float, credit_min: float, credit_max: float,
                    window: timedelta) -> None:
        """Apply new spec bounds, keeping the balance and clamping it into the new band."""
        if not credit_min < credit_max:
            raise ValueError(f"credit_min {credit_min} must be below credit_max {credit_max}")
        self.target_error = target_error
        self.credit_min = credit_min
        self.credit_max = credit_max
        if window != self.window:
            self.window = window
            self._window_start = None
        self.balance = self._clamp(self.balance)

    def record(self, *, now: datetime, requests: float, precision_sum: float) -> float:
        """Add served traffic to the ledger and return the new balance.

        `precision_sum` is the sum over requests of their precision as a fraction
        (0.0-1.0), so `precision_sum / requests` is the realised mean precision.
        Zero or negative request counts change nothing.
        """
        if not (math.isfinite(requests) and math.isfinite(precision_sum)) or requests <= 0:
            return self.balance

        realised_precision = min(1.0, max(0.0, precision_sum / requests))
        realised_error = 1.0 - realised_precision
        delta = (self.target_error - realised_error) * self.sensitivity
        self.balance = self._clamp(self.balance + delta)
        self._deltas.append(delta)
        self.velocity = sum(self._deltas) / len(self._deltas)

        self._roll_window(now)
        self._window_requests += requests
        self._window_precision_sum += realised_precision * requests
        self.updated_at = now
        return self.balance

    def view(self, now: datetime | None = None) -> LedgerView:
        """Return the read-only view policies see; `now` rolls the quality window forward."""
        if now is not None:
            self._roll_window(now)
        return LedgerView(
            balance=self.balance,
            velocity=self.velocity,
            credit_min=self.credit_min,
            credit_max=self.credit_max,
            target_error=self.target_error,
            window_start=self._window_start,
            window_requests=self._window_requests,
            window_precision_sum=self._window_precision_sum,
        )

    def to_state(self) -> dict:
        """Serialise to plain JSON for the TrafficSchedule status."""
        state: dict = {
            "balance": round(self.balance, 6),
            "velocity": round(self.velocity, 6),
            "updatedAt": format_time(self.updated_at) if self.updated_at else None,
            "deltas": [round(delta, 6) for delta in self._deltas],
        }
        if self._window_start is not None:
            state["windowStart"] = format_time(self._window_start)
            state["windowRequests"] = self._window_requests
            state["windowPrecisionSum"] = self._window_precision_sum
        return state

    def from_state(self, state: dict) -> None:
        """Restore from `to_state()` output; missing keys keep their current values.

        Raises ValueError when a present value has the wrong type, so a corrupt
        status is reported instead of half-applied.
        """
        balance = float(state.get("balance", self.balance))
        velocity = float(state.get("velocity", self.velocity))
        updated_raw = state.get("updatedAt")
        updated_at = parse_time(updated_raw) if updated_raw else self.updated_at
        deltas = [float(delta) for delta in state.get("deltas", [])]
        window_raw = state.get("windowStart")
        window_start = parse_time(window_raw) if window_raw else None
        window_requests = float(state.get("windowRequests", 0.0))
        window_precision_sum = float(state.get("windowPrecisionSum", 0.0))
        if not all(math.isfinite(value) for value in (balance, velocity, window_requests,
                                                        window_precision_sum, *deltas)):
            raise ValueError("ledger state contains a non-finite number")

        self.balance = self._clamp(balance)
        self.velocity = velocity
        self.updated_at = updated_at
        self._deltas.clear()
        self._deltas.extend(deltas)
        if window_start is not None and window_start == window_start_for(window_start, self.window):
            self._window_start = window_start
            self._window_requests = window_requests
            self._window_precision_sum = window_precision_sum

    def _clamp(self, value: float) -> float:
        return min(self.credit_max, max(self.credit_min, value))

    def _roll_window(self, now: datetime) -> None:
        start = window_start_for(now, self.window)
        if self._window_start != start:
            self._window_start = start
            self._window_requests = 0.0
            self._window_precision_sum = 0.0
