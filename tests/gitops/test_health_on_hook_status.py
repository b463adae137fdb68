"""The Argo CD health check reads the status that the real sync hook writes.

The shipped TrafficSchedule and carbonstat workload go through `hooks.sync.sync`
with an in-process engine on the bundled carbon trace, as Metacontroller would
call it. The status the hook returns is put on the live object, and the Lua
health check must turn it into the outcome Argo CD should show.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from hooks.config import HookConfig
from hooks.engine_client import EngineUnavailable, InProcessEngine
from hooks.render import CONTROLLER_PATH, build_request
from hooks.sync import sync
from tests.gitops.lua_health import run_health_check

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = REPO / "argocd" / "workloads" / "carbonstat"
SCHEDULE = REPO / "argocd" / "schedules" / "carbonstat.yaml"
NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)


class UnreachableEngine:
    """An engine whose every call fails the way a network outage does."""

    def put_config(self, namespace: str, name: str, configuration: dict) -> dict:
        raise EngineUnavailable(f"PUT /config/{namespace}/{name} failed: ConnectionError")


def shipped_schedule() -> dict:
    schedule = yaml.safe_load(SCHEDULE.read_text())
    schedule["spec"]["scheduler"]["carbonTarget"] = "trace"  # keep the engine off the network
    return schedule


def workload_objects() -> list[dict]:
    documents = [yaml.safe_load(path.read_text()) for path in sorted(WORKLOAD.glob("*.yaml"))]
    return [doc for doc in documents if doc.get("kind") in {"Deployment", "Service"}]


def observed_children(children: list[dict]) -> dict:
    """Group rendered children the way Metacontroller reports them: `Kind.apiVersion` then name."""
    grouped: dict[str, dict] = {}
    for child in children:
        grouped.setdefault(f"{child['kind']}.{child['apiVersion']}", {})[child["metadata"]["name"]] = child
    return grouped


def sync_once(schedule: dict, *, engine, children: list[dict] | None = None) -> dict:
    request = build_request(
        schedule, workload_objects(), controller=yaml.safe_load(CONTROLLER_PATH.read_text())
    )
    if children:
        request["children"].update(observed_children(children))
    return sync(request, engine=engine, config=HookConfig(), now=NOW)


def live_object(schedule: dict, status: dict, *, generation: int = 1) -> dict:
    live = copy.deepcopy(schedule)
    live["metadata"]["generation"] = generation
    live["status"] = status
    return live


@pytest.fixture(scope="module")
def engine():
    return InProcessEngine.create()


def test_first_sync_is_progressing_until_children_exist(engine):
    schedule = shipped_schedule()

    response = sync_once(schedule, engine=engine)
    health = run_health_check(live_object(schedule, response["status"]))

    assert health["status"] == "Progressing"
    assert health["message"].startswith("waiting for")


def test_second_sync_with_children_is_healthy(engine):
    schedule = shipped_schedule()
    first = sync_once(schedule, engine=engine)
    schedule["status"] = first["status"]

    second = sync_once(schedule, engine=engine, children=first["children"])
    health = run_health_check(live_object(schedule, second["status"]))

    assert health["status"] == "Healthy"


def test_new_generation_is_progressing_until_synced(engine):
    schedule = shipped_schedule()
    first = sync_once(schedule, engine=engine)
    schedule["status"] = first["status"]
    second = sync_once(schedule, engine=engine, children=first["children"])

    health = run_health_check(live_object(schedule, second["status"], generation=2))

    assert health["status"] == "Progressing"
    assert "generation 2" in health["message"]


def test_invalid_spec_is_degraded_with_hook_message(engine):
    schedule = shipped_schedule()
    schedule["spec"]["scheduler"]["policy"] = "greedy"

    response = sync_once(schedule, engine=engine)
    spec_valid = next(c for c in response["status"]["conditions"] if c["type"] == "SpecValid")
    health = run_health_check(live_object(schedule, response["status"]))

    assert spec_valid["status"] == "False"
    assert health["status"] == "Degraded"
    assert health["message"] == spec_valid["message"]
    assert "greedy" in health["message"]


def test_unreachable_engine_is_degraded_with_hook_message():
    schedule = shipped_schedule()

    response = sync_once(schedule, engine=UnreachableEngine())
    reachable = next(c for c in response["status"]["conditions"] if c["type"] == "EngineReachable")
    health = run_health_check(live_object(schedule, response["status"]))

    assert reachable["status"] == "False"
    assert health["status"] == "Degraded"
    assert health["message"] == reachable["message"]
