"""Same input, same output: the property that keeps Metacontroller from patching children forever."""

from __future__ import annotations

import json
import re

from hooks.names import shorten
from hooks.sync import sync
from tests.hooks.conftest import NOW, load_request, observed_children, validate_child
from tests.hooks.fakes import FakeEngine

RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def sync_bytes(request: dict, config) -> str:
    response = sync(request, engine=FakeEngine(), config=config, now=NOW)
    return json.dumps(response, sort_keys=True, separators=(",", ":"))


def test_same_request_gives_identical_bytes(config):
    first = sync_bytes(load_request("sync-steady-state.json"), config)
    second = sync_bytes(load_request("sync-steady-state.json"), config)
    assert first == second


def test_children_do_not_depend_on_clock(config):
    request = load_request("sync-steady-state.json")
    early = sync(request, engine=FakeEngine(), config=config, now=NOW)
    later = sync(request, engine=FakeEngine(), config=config, now=NOW.replace(hour=23))
    assert early["children"] == later["children"]


def test_second_sync_returns_previous_output_unchanged(config):
    first = sync(load_request("sync-first-three-flavours.json"), engine=FakeEngine(), config=config, now=NOW)
    request = load_request("sync-first-three-flavours.json")
    request["parent"]["status"] = first["status"]
    request["children"] = observed_children(first)
    second = sync(request, engine=FakeEngine(), config=config, now=NOW)

    assert second["children"] == first["children"]
    # The only status change is Ready turning True now that every child exists.
    changed = {k for k in second["status"] if second["status"][k] != first["status"].get(k)}
    assert changed == {"conditions"}


def test_generation_only_change_gives_same_children(config):
    request = load_request("sync-steady-state.json")
    bumped = load_request("sync-steady-state.json")
    bumped["parent"]["metadata"]["generation"] = 9
    before = sync(request, engine=FakeEngine(), config=config, now=NOW)
    after = sync(bumped, engine=FakeEngine(), config=config, now=NOW)

    assert after["children"] == before["children"]
    assert after["status"]["observedGeneration"] == 9
    assert {c["observedGeneration"] for c in after["status"]["conditions"]} == {9}


def test_unchanged_condition_keeps_transition_time(config):
    request = load_request("sync-steady-state.json")
    previous = {c["type"]: c for c in request["parent"]["status"]["conditions"]}
    response = sync(request, engine=FakeEngine(), config=config, now=NOW.replace(hour=22))
    current = {c["type"]: c for c in response["status"]["conditions"]}
    assert current["SpecValid"]["lastTransitionTime"] == previous["SpecValid"]["lastTransitionTime"]
    # Ready moved from ChildrenPending (False) to True, so its time moves.
    assert current["Ready"]["lastTransitionTime"] == "2026-12-04T22:00:00Z"


def long_name_request(schedule: str, service: str) -> dict:
    request = load_request("sync-first-three-flavours.json")
    request["parent"]["metadata"]["name"] = schedule
    request["parent"]["spec"]["target"]["service"] = service
    for deployment in request["related"]["Deployment.apps/v1"].values():
        deployment["metadata"]["labels"]["carbonrouter/parent-service"] = service
    return request


def test_long_names_are_shortened_with_hash(config):
    schedule = "checkout-payments-europe-west-with-a-very-long-descriptive-name.v2"
    service = "checkout-payments-europe-west-with-a-very-long-service-name-x"
    response = sync(long_name_request(schedule, service), engine=FakeEngine(), config=config, now=NOW)

    assert len(response["children"]) == 12
    for child in response["children"]:
        name = child["metadata"]["name"]
        assert len(name) <= 63, name
        assert RFC1035.match(name), name
        for value in child["metadata"]["labels"].values():
            assert len(value) <= 63
        validate_child(child)
    names = [(c["kind"], c["metadata"]["name"]) for c in response["children"]]
    assert len(set(names)) == len(names)


def test_long_names_are_stable_and_distinct(config):
    base = "a" * 70
    first = sync(long_name_request(base + "-one", "checkout"), engine=FakeEngine(), config=config, now=NOW)
    again = sync(long_name_request(base + "-one", "checkout"), engine=FakeEngine(), config=config, now=NOW)
    other = sync(long_name_request(base + "-two", "checkout"), engine=FakeEngine(), config=config, now=NOW)
    first_names = [c["metadata"]["name"] for c in first["children"]]
    assert first_names == [c["metadata"]["name"] for c in again["children"]]
    assert set(first_names).isdisjoint(c["metadata"]["name"] for c in other["children"])


def test_shorten_keeps_short_names_and_hashes_long_ones():
    assert shorten("checkout-router") == "checkout-router"
    long = "x" * 80
    short = shorten(long)
    assert len(short) == 63
    assert short.startswith("x" * 54 + "-")
    assert short != shorten("x" * 81)


def test_recorded_children_render_unchanged(config):
    request = load_request("sync-steady-state.json")
    recorded = []
    for objects in request["children"].values():
        for child in objects.values():
            applied = json.loads(
                child["metadata"]["annotations"]["metacontroller.k8s.io/last-applied-configuration"]
            )
            # Metacontroller adds its selector label; the hook never renders it.
            del applied["metadata"]["labels"]["controller-uid"]
            recorded.append(applied)
    response = sync(request, engine=FakeEngine(), config=config, now=NOW)
    assert sorted(response["children"], key=kind_and_name) == sorted(recorded, key=kind_and_name)


def kind_and_name(child: dict) -> tuple[str, str]:
    return child["kind"], child["metadata"]["name"]
