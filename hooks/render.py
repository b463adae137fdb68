"""Render a TrafficSchedule's children from files, for review in a pull request.

    python -m hooks.render SCHEDULE.yaml [RELATED.yaml ...] [--engine-url URL | --in-process]

The command builds the request Metacontroller would send on a first sync:
no children yet, and the given Deployments and Services as related objects.
It runs the same `sync` function as the hook and prints the children as
multi-document YAML, in the order the hook returns them. Conditions that
are not True go to stderr. The exit status is 1 when the hook would keep
existing children instead of rendering (invalid spec, no flavours, no
decision), and 2 for unreadable input.
"""

from __future__ import annotations

import argparse
import copy
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from hooks.config import REPO_ROOT, HookConfig
from hooks.engine_client import HttpEngine, InProcessEngine
from hooks.sync import BadRequest, CannotSync, sync

CONTROLLER_PATH = REPO_ROOT / "metacontroller" / "compositecontroller.yaml"
PLURAL_KINDS = {"deployments": "Deployment", "services": "Service", "scaledobjects": "ScaledObject",
                "triggerauthentications": "TriggerAuthentication", "destinationrules": "DestinationRule",
                "virtualservices": "VirtualService"}
RELATED_KINDS = {"Deployment": "Deployment.apps/v1", "Service": "Service.v1"}


class InputError(ValueError):
    """A file could not be read or does not hold what the command expects."""


def load_documents(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            return [doc for doc in yaml.safe_load_all(handle) if doc]
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read YAML: {error}") from None


def build_request(schedule: dict, related: list[dict], *, controller: dict) -> dict:
    """Build the sync request of a first sync: every child type present and empty."""
    parent = copy.deepcopy(schedule)
    metadata = parent.setdefault("metadata", {})
    metadata.setdefault("namespace", "default")
    metadata.setdefault("generation", 1)
    children = {}
    for rule in controller["spec"]["childResources"]:
        kind = PLURAL_KINDS[rule["resource"]]
        children[f"{kind}.{rule['apiVersion']}"] = {}
    grouped: dict[str, dict] = {key: {} for key in RELATED_KINDS.values()}
    for obj in related:
        grouped[RELATED_KINDS[obj["kind"]]][obj["metadata"]["name"]] = obj
    return {"controller": controller, "parent": parent, "children": children, "related": grouped,
            "finalizing": False}


def split_inputs(paths: list[Path]) -> tuple[dict, list[dict]]:
    """Return the one TrafficSchedule and the related Deployments/Services among the files."""
    schedules, related = [], []
    for path in paths:
        for doc in load_documents(path):
            kind = doc.get("kind")
            if kind == "TrafficSchedule":
                schedules.append(doc)
            elif kind in RELATED_KINDS:
                related.append(doc)
            else:
                print(f"warning: {path}: ignoring {kind} {doc.get('metadata', {}).get('name')}; "
                      "only Deployments and Services are related objects", file=sys.stderr)
    if len(schedules) != 1:
        raise InputError(f"expected exactly one TrafficSchedule in the files, found {len(schedules)}")
    namespace = schedules[0].get("metadata", {}).get("namespace", "default")
    related = [obj for obj in related if obj.get("metadata", {}).get("namespace", namespace) == namespace]
    return schedules[0], related


def render(paths: list[Path], *, engine, config: HookConfig, now: datetime | None = None) -> dict:
    """Run the sync hook on the files and return its response."""
    schedule, related = split_inputs(paths)
    controller = load_documents(CONTROLLER_PATH)[0]
    request = build_request(schedule, related, controller=controller)
    return sync(request, engine=engine, config=config, now=now or datetime.now(UTC))


def to_yaml(children: list[dict]) -> str:
    return yaml.safe_dump_all(children, sort_keys=True, default_flow_style=False, explicit_start=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hooks.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path,
                        help="YAML files: one TrafficSchedule plus its flavour Deployments and Service")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--engine-url", help="ask the engine at this base URL (default: HOOKS_ENGINE_URL)")
    source.add_argument("--in-process", action="store_true",
                        help="compute the decision with an engine created in this process")
    args = parser.parse_args(argv)

    try:
        config = HookConfig.from_env()
        engine = (InProcessEngine.create() if args.in_process
                  else HttpEngine(args.engine_url or config.engine_url, timeout=config.engine_timeout))
        response = render(args.files, engine=engine, config=config)
    except (InputError, BadRequest, CannotSync, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    for condition in response["status"].get("conditions", []):
        if _worth_reporting(condition):
            print(f"{condition['type']}={condition['status']} {condition['reason']}: {condition['message']}",
                  file=sys.stderr)
    sys.stdout.write(to_yaml(response["children"]))
    rendered = any(c["type"] == "CeilingsClamped" for c in response["status"].get("conditions", []))
    return 0 if rendered else 1


def _worth_reporting(condition: dict) -> bool:
    # Children never exist on a rendered first sync, so ChildrenPending is expected noise.
    if condition["type"] == "CeilingsClamped":
        return condition["status"] == "True"
    return condition["status"] != "True" and condition["reason"] != "ChildrenPending"


if __name__ == "__main__":
    sys.exit(main())
