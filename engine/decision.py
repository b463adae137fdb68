"""The decision document: what the engine returns for a schedule and what callers store.

A `Decision` is computed by a session at evaluation time and cached until its
`valid_until`. `render_decision` turns it into the JSON of the API contract,
adding the ledger figures as they are at response time. A caller that
stores `state` therefore stores the newest balance even while the weights
are still cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from engine.ledger import CreditLedger, format_time
from engine.model import CarbonSlot, CarbonSnapshot, Flavour
from engine.throttle import Throttle

MAX_SLOTS_SHOWN = 48  # 24 h of half-hour slots; the planner's full horizon stays internal


@dataclass(frozen=True)
class ManualOverride:
    """Weights set by an operator, in force until `until` (wall-clock time)."""

    weights: dict[str, int]
    until: datetime
    throttle: float | None = None

    def to_state(self) -> dict:
        return {"flavourWeights": dict(self.weights), "until": format_time(self.until),
                "throttle": self.throttle}


@dataclass(frozen=True)
class Decision:
    """One evaluation's outcome; weights are integer percentages keyed by flavour name."""

    policy: str
    weights: dict[str, int]
    throttle: Throttle
    ceilings: dict[str, int]
    carbon: CarbonSnapshot
    evaluated_at: datetime
    valid_until: datetime
    diagnostics: dict = field(default_factory=dict)
    manual: ManualOverride | None = None

    def change_key(self) -> tuple:
        """Return what, when it differs between two decisions, counts as a decision change."""
        return (self.policy, tuple(sorted(self.weights.items())), tuple(sorted(self.ceilings.items())))


def average_precision(flavours: tuple[Flavour, ...], weights: dict[str, int]) -> float:
    """Return the expected precision of the mix, 0-100."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    weighted = sum(flavour.precision * 100.0 * weights.get(flavour.name, 0) for flavour in flavours)
    return round(weighted / total, 2)


# The last slot tuple rendered and its JSON. Sessions on one source share slot tuples, so this
# saves formatting the same 48 slots once per session. The strong reference rules out a
# recycled id() matching a new tuple.
_last_slots: tuple[tuple, list] | None = None


@lru_cache(maxsize=4096)
def render_slot(slot: CarbonSlot) -> dict:
    """Return one slot's JSON, cached by value because sources rebuild equal slots per snapshot."""
    return {"from": format_time(slot.start), "to": format_time(slot.end), "intensity": slot.intensity,
            "actual": slot.actual}


def render_slots(slots: tuple) -> list[dict]:
    """Return the JSON of the first slots (the list is shared; callers must not change it)."""
    global _last_slots
    cached = _last_slots
    if cached is not None and cached[0] is slots:
        return cached[1]
    rendered = [render_slot(slot) for slot in slots[:MAX_SLOTS_SHOWN]]
    _last_slots = (slots, rendered)
    return rendered


def render_carbon(carbon: CarbonSnapshot) -> dict:
    return {
        "now": carbon.current,
        "next": carbon.next,
        "index": carbon.index,
        "source": carbon.source,
        "stale": carbon.stale,
        "available": carbon.available,
        "message": carbon.message,
        "sourceTime": format_time(carbon.now),
        "timeScale": carbon.time_scale,
        "slots": render_slots(carbon.slots),
    }


def json_safe(value, *, depth: int = 0):
    """Return `value` as plain JSON data: non-finite floats become None, unknown types become strings.

    Policy diagnostics may contain numpy scalars or NaN, which would make the
    response fail or produce JSON that strict parsers reject.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > 8:
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item, depth=depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item, depth=depth + 1) for item in value]
    try:
        number = float(value)  # numpy scalars and Decimal
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def render_decision(
    decision: Decision,
    *,
    namespace: str,
    name: str,
    flavours: tuple[Flavour, ...],
    ledger: CreditLedger,
    evaluator: str,
) -> dict:
    """Return the decision JSON of the API contract."""
    state: dict = {"ledger": ledger.to_state()}
    if decision.manual is not None:
        state["manual"] = decision.manual.to_state()
    document = {
        "namespace": namespace,
        "name": name,
        "policy": decision.policy,
        "flavourWeights": {flavour.name: decision.weights.get(flavour.name, 0) for flavour in flavours},
        "flavours": [
            {"name": flavour.name, "precision": round(flavour.precision * 100.0, 4),
             "energy": flavour.energy, "enabled": flavour.enabled,
             "weight": decision.weights.get(flavour.name, 0)}
            for flavour in flavours
        ],
        "validUntil": format_time(decision.valid_until),
        "evaluatedAt": format_time(decision.evaluated_at),
        "credits": {
            "balance": round(ledger.balance, 6),
            "velocity": round(ledger.velocity, 6),
            "target": ledger.target_error,
            "min": ledger.credit_min,
            "max": ledger.credit_max,
        },
        "avgPrecision": average_precision(flavours, decision.weights),
        "processing": {**decision.throttle.to_json(), "ceilings": dict(decision.ceilings)},
        "carbon": render_carbon(decision.carbon),
        "evaluator": evaluator,
        "diagnostics": json_safe(decision.diagnostics),
        "state": state,
    }
    if decision.manual is not None:
        document["manualUntil"] = format_time(decision.manual.until)
    return document
