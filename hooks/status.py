"""The TrafficSchedule status the sync hook returns.

Metacontroller replaces the parent's whole `.status` with what the hook
returns. The hook therefore starts from the status it observed and overlays
what it learned in this sync. A field it could not refresh keeps its last
value instead of going blank, and the ledger and last decision survive an
engine outage or restart.

Conditions follow Kubernetes conventions: `lastTransitionTime` only moves
when a condition's status changes, so an unchanged schedule returns a
byte-identical status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hooks.children import Ceiling
from hooks.flavours import Flavour

CONDITION_ORDER = ("SpecValid", "FlavoursDiscovered", "EngineReachable", "CeilingsClamped", "Ready")
MAX_FORECAST_SLOTS = 96  # 48 h of half-hour slots keeps the object well under etcd's size limit
DECISION_FIELDS = ("namespace", "name", "policy", "flavourWeights", "flavours", "validUntil", "credits",
                   "avgPrecision", "processing", "evaluator", "state")


@dataclass(frozen=True)
class Condition:
    """One condition as this sync evaluated it."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: object) -> datetime | None:
    """Parse an RFC 3339 UTC time such as 2026-12-04T20:30:00Z; None when invalid."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def render_conditions(conditions: list[Condition], *, previous: list, generation: int | None,
                      now: datetime) -> list[dict]:
    """Turn evaluated conditions into status entries, keeping unchanged transition times.

    Conditions this sync did not evaluate keep their previous entry unchanged.
    """
    earlier = {c.get("type"): c for c in previous or [] if isinstance(c, dict)}
    by_type = {c.type: c for c in conditions}
    rendered = []
    for kind in CONDITION_ORDER:
        condition = by_type.get(kind)
        if condition is None:
            # Not evaluated in this sync (an earlier step failed): report the
            # last known state rather than a guess.
            if kind in earlier:
                rendered.append(earlier[kind])
            continue
        old = earlier.get(kind) or {}
        moved = old.get("status") != condition.status or not old.get("lastTransitionTime")
        entry = {
            "type": condition.type,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": rfc3339(now) if moved else old["lastTransitionTime"],
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        rendered.append(entry)
    return rendered


def compact_decision(decision: dict) -> dict:
    """Keep what rendering and the engine's restart need, without the long forecast."""
    kept = {key: decision[key] for key in DECISION_FIELDS if key in decision}
    carbon = decision.get("carbon")
    if isinstance(carbon, dict):
        kept["carbon"] = {key: value for key, value in carbon.items() if key != "slots"}
    return kept


def decision_status(*, decision: dict, flavours: list[Flavour], ceilings: list[Ceiling]) -> dict:
    """Return the reference status fields that one decision fills; absent values are left out."""
    weights = decision.get("flavourWeights") or {}
    credits = decision.get("credits") or {}
    processing = decision.get("processing") or {}
    carbon = decision.get("carbon") or {}
    fields = {
        "flavours": [
            {"name": f.name, "precision": f.precision, "weight": int(weights.get(f.name, 0)),
             "energy": f.energy, "deployment": f.deployment, "queue": f.queue}
            for f in flavours
        ],
        "activePolicy": decision.get("policy"),
        "validUntil": decision.get("validUntil"),
        "creditBalance": _number(credits.get("balance")),
        "creditVelocity": _number(credits.get("velocity")),
        "processingThrottle": _number(processing.get("throttle")),
        "effectiveReplicaCeilings": _ceilings_by_component(ceilings),
        "carbonForecastNow": _number(carbon.get("now")),
        "carbonForecastNext": _number(carbon.get("next")),
        "forecastSchedule": _forecast(carbon.get("slots")),
        "diagnostics": decision.get("diagnostics") if isinstance(decision.get("diagnostics"), dict) else None,
        "ledger": _without_nulls((decision.get("state") or {}).get("ledger")),
        "lastDecision": compact_decision(decision),
    }
    return {key: value for key, value in fields.items() if value not in (None, [], {})}


def _without_nulls(value: object) -> dict | None:
    # The CRD types ledger fields without `nullable`, so the API server would
    # reject a null (the engine sends updatedAt: null before its first update).
    if not isinstance(value, dict):
        return None
    return {key: item for key, item in value.items() if item is not None} or None


def _number(value: object) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _ceilings_by_component(ceilings: list[Ceiling]) -> dict:
    applied = {}
    for ceiling in ceilings:
        key = ceiling.component.removeprefix("flavour ")
        applied[key] = ceiling.applied
    return applied


def _forecast(slots: object) -> list | None:
    if not isinstance(slots, list):
        return None
    kept = []
    for slot in slots[:MAX_FORECAST_SLOTS]:
        if isinstance(slot, dict):
            kept.append({key: slot[key] for key in ("from", "to", "intensity", "actual")
                         if slot.get(key) is not None})
    return kept or None


def merge_status(previous: dict, fresh: dict, *, conditions: list[dict], generation: int | None) -> dict:
    """Overlay this sync's fields on the observed status; fields not refreshed keep their value."""
    merged = {key: value for key, value in (previous or {}).items() if value not in (None, "", [], {})}
    merged.update(fresh)
    merged["conditions"] = conditions
    if generation is not None:
        merged["observedGeneration"] = generation
    return merged
