"""Run the TrafficSchedule health check the way Argo CD runs it, on fixture objects.

The fixtures are hand-written objects for each outcome; `lua_health` explains
how the script is run.
"""

from __future__ import annotations

import copy

import pytest

from tests.gitops.lua_health import ARGOCD_STATUSES, run_health_check


def schedule(*, generation: int = 3, status: dict | None = None) -> dict:
    """Build a TrafficSchedule as the API server returns it, optionally with a status."""
    live = {
        "apiVersion": "scheduling.carbonrouter.io/v1alpha1",
        "kind": "TrafficSchedule",
        "metadata": {"name": "carbonstat", "namespace": "carbonstat", "generation": generation},
        "spec": {"target": {"service": "carbonstat"}},
    }
    if status is not None:
        live["status"] = copy.deepcopy(status)
    return live


def conditions(**statuses: tuple[str, str]) -> list[dict]:
    """Build conditions from `Type=(status, message)` keyword pairs."""
    return [
        {"type": kind, "status": status, "reason": kind + status, "message": message}
        for kind, (status, message) in statuses.items()
    ]


def test_ready_on_current_generation_is_healthy():
    live = schedule(
        status={
            "observedGeneration": 3,
            "conditions": conditions(
                SpecValid=("True", "spec is valid"),
                EngineReachable=("True", "engine answered"),
                Ready=("True", "3 flavours routed"),
            ),
        }
    )

    health = run_health_check(live)

    assert health["status"] == "Healthy"
    assert health["message"] == "3 flavours routed"


def test_object_without_status_is_progressing():
    health = run_health_check(schedule(status=None))

    assert health["status"] == "Progressing"
    assert "Waiting for the controller" in health["message"]


def test_empty_status_is_progressing():
    health = run_health_check(schedule(status={}))

    assert health["status"] == "Progressing"
    assert "generation 3" in health["message"]


def test_ready_for_older_generation_is_progressing():
    live = schedule(
        generation=4,
        status={
            "observedGeneration": 3,
            "conditions": conditions(Ready=("True", "3 flavours routed")),
        },
    )

    health = run_health_check(live)

    assert health["status"] == "Progressing"
    assert "generation 4" in health["message"]
    assert "last observed: 3" in health["message"]


def test_stale_invalid_spec_is_progressing_not_degraded():
    # The user has just committed a fix: the old SpecValid=False describes
    # the previous generation and must not keep the app red.
    live = schedule(
        generation=5,
        status={
            "observedGeneration": 4,
            "conditions": conditions(SpecValid=("False", "spec.scheduler.targetError: must be <= 1")),
        },
    )

    assert run_health_check(live)["status"] == "Progressing"


def test_invalid_spec_is_degraded_with_condition_message():
    message = "spec.scheduler.policy: 'greedy' is not one of credit-greedy, forecast-aware"
    live = schedule(
        status={
            "observedGeneration": 3,
            "conditions": conditions(
                SpecValid=("False", message),
                EngineReachable=("True", "engine answered"),
                Ready=("False", "spec is invalid"),
            ),
        }
    )

    health = run_health_check(live)

    assert health["status"] == "Degraded"
    assert health["message"] == message


def test_unreachable_engine_is_degraded_with_condition_message():
    message = "engine at http://carbonrouter-engine.carbonrouter-system timed out after 3 s"
    live = schedule(
        status={
            "observedGeneration": 3,
            "conditions": conditions(
                SpecValid=("True", "spec is valid"),
                EngineReachable=("False", message),
                Ready=("True", "routing with the last decision"),
            ),
        }
    )

    health = run_health_check(live)

    assert health["status"] == "Degraded"
    assert health["message"] == message


def test_degraded_without_message_falls_back_to_reason():
    live = schedule(
        status={
            "observedGeneration": 3,
            "conditions": [{"type": "EngineReachable", "status": "False", "reason": "EngineTimeout"}],
        }
    )

    health = run_health_check(live)

    assert health["status"] == "Degraded"
    assert health["message"] == "EngineTimeout"


def test_ready_false_on_current_generation_is_progressing_with_its_message():
    live = schedule(
        status={
            "observedGeneration": 3,
            "conditions": conditions(
                SpecValid=("True", "spec is valid"),
                Ready=("False", "no flavour Deployment found for service carbonstat"),
            ),
        }
    )

    health = run_health_check(live)

    assert health["status"] == "Progressing"
    assert health["message"] == "no flavour Deployment found for service carbonstat"


def test_current_generation_without_conditions_is_progressing():
    health = run_health_check(schedule(status={"observedGeneration": 3}))

    assert health["status"] == "Progressing"
    assert health["message"] == "Waiting for the Ready condition"


@pytest.mark.parametrize(
    "status",
    [
        None,
        {},
        {"observedGeneration": 3},
        {"observedGeneration": 2, "conditions": conditions(Ready=("True", "ok"))},
        {"observedGeneration": 3, "conditions": conditions(Ready=("True", ""))},
        {"observedGeneration": 3, "conditions": conditions(Ready=("Unknown", "starting"))},
        {"observedGeneration": 3, "conditions": conditions(SpecValid=("False", "bad"))},
    ],
)
def test_every_outcome_is_a_status_argocd_accepts(status):
    health = run_health_check(schedule(status=status))

    assert health["status"] in ARGOCD_STATUSES
    assert isinstance(health["message"], str)
