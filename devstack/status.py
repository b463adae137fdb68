"""One-line summaries of a running stack, and the `status` command.

The line shows what a person watching the demo wants at a glance: the
replayed slot and its carbon intensity, the flavour weights the engine chose,
the expected precision, the throttle and the credit balance.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from devstack.processes import probe


class NotRunning(RuntimeError):
    """No stack state file exists or its process is gone; the message gives the command that starts one."""


def fetch_decision(engine_url: str, key: str, *, timeout: float = 2.0) -> dict | None:
    """Return the engine's current decision for `key` (`ns/name`), or None when it has none."""
    try:
        response = requests.get(f"{engine_url}/schedule/{key}", timeout=timeout)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    return response.json()


def format_weights(decision: dict) -> str:
    """Format the weights most precise flavour first, the order of the decision's `flavours` list."""
    flavours = decision.get("flavours") or []
    if flavours:
        pairs = [(flavour.get("name"), flavour.get("weight")) for flavour in flavours]
    else:
        pairs = list((decision.get("flavourWeights") or {}).items())
    return " ".join(f"{name} {weight:>3}" for name, weight in pairs)


def status_line(decision: dict | None, *, health: dict[str, str] | None = None) -> str:
    """Format one status line from a decision (None: the engine has no decision yet)."""
    stamp = time.strftime("%H:%M:%S")
    unhealthy = {name: state for name, state in (health or {}).items() if state != "ok"}
    problems = ("  DOWN: " + ", ".join(f"{n} ({s})" for n, s in unhealthy.items())) if unhealthy else ""
    if decision is None:
        return f"{stamp} engine has no decision yet{problems}"

    carbon = decision.get("carbon") or {}
    slots = carbon.get("slots") or []
    slot = slots[0].get("from", "?") if slots else "?"
    credits = decision.get("credits") or {}
    processing = decision.get("processing") or {}
    stale = " STALE" if carbon.get("stale") else ""
    index = f" ({carbon['index']})" if carbon.get("index") else ""
    return (
        f"{stamp} slot {slot} intensity {_number(carbon.get('now'))} g/kWh{index}{stale}"
        f" next {_number(carbon.get('next'))} | {format_weights(decision)}"
        f" | precision {_number(decision.get('avgPrecision'), 1)}"
        f" | throttle {_number(processing.get('throttle'), 2)}"
        f" | credit {_number(credits.get('balance'), 3, signed=True)}"
        f" | {decision.get('policy', '?')}{problems}"
    )


def _number(value, digits: int = 0, *, signed: bool = False) -> str:
    if not isinstance(value, int | float):
        return "-"
    sign = "+" if signed else ""
    return f"{value:{sign}.{digits}f}"


def read_state(state_file: Path) -> dict:
    """Return the state file a running `devstack run` wrote; raise NotRunning otherwise."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        raise NotRunning(
            f"no running stack found ({state_file} is missing); start one with `make run`"
        ) from None
    if not _pid_alive(state.get("pid", 0)):
        raise NotRunning(
            f"the stack recorded in {state_file} is no longer running; start one with `make run`"
        )
    return state


def _pid_alive(pid: int) -> bool:
    import os

    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def print_status(state_file: Path) -> int:
    """Print each component's health and the current decision of a running stack."""
    state = read_state(state_file)
    for name, url in state["urls"].items():
        health = "ok" if probe(url + "/healthz") else "down"
        print(f"{name:<16} {url:<28} {health}")
    decision = fetch_decision(state["urls"]["engine"], state["schedule"])
    print(status_line(decision))
    return 0
