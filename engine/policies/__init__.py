"""Scheduling policies, selected by `scheduler.policy` of a TrafficSchedule.

Each policy module registers its class in `POLICIES` below; the engine
rejects any name not in this table and lists the valid ones.
"""

from __future__ import annotations

from engine.policies.base import Policy, PolicyResult, integer_weights

POLICIES: dict[str, type[Policy]] = {}


def register(policy_class: type[Policy]) -> type[Policy]:
    """Add a policy class to the table under its `name`."""
    POLICIES[policy_class.name] = policy_class
    return policy_class


__all__ = ["POLICIES", "Policy", "PolicyResult", "integer_weights", "register"]

# Policy modules register themselves on import; one line per module, in registration order.
# isort: off
from engine.policies import p100  # noqa: E402,F401
from engine.policies import random  # noqa: E402,F401
from engine.policies import round_robin  # noqa: E402,F401
from engine.policies import credit_greedy  # noqa: E402,F401
from engine.policies import forecast_aware  # noqa: E402,F401
from engine.policies import forecast_aware_global  # noqa: E402,F401
from engine.policies import forecast_optimal  # noqa: E402,F401
