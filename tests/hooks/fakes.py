"""A stand-in engine for hook tests: decisions in the documented shape, or failures on demand.

The real engine is tested on its own and used by the tests that need a real
decision. This fake returns fixed, hand-checkable numbers and can fail the
way a network engine fails.
"""

from __future__ import annotations

import json
import threading
import time

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from hooks.engine_client import EngineUnavailable

VALID_UNTIL = "2026-12-04T20:01:00Z"


def fake_decision(
    configuration: dict,
    *,
    namespace: str = "shop",
    name: str = "checkout",
    throttle: float = 0.5,
    ceilings: dict | None = None,
    valid_until: str = VALID_UNTIL,
) -> dict:
    """Return a decision for `configuration`: weights 60/25/15 over the first three flavours.

    Ceilings default to max(min, floor(max * throttle)) per component, the router exempt.
    """
    names = [flavour["name"] for flavour in configuration["flavours"]]
    shares = [60, 25, 15] + [0] * max(0, len(names) - 3)
    weights = dict(zip(names, shares[: len(names)], strict=True))
    if len(names) < 3:
        weights[names[0]] += 100 - sum(weights.values())
    bounds = configuration["componentBounds"]
    if ceilings is None:
        ceilings = {"router": bounds["router"]["max"]}
        for component in ("consumer", "target"):
            ceilings[component] = max(bounds[component]["min"], int(bounds[component]["max"] * throttle))
    return {
        "namespace": namespace,
        "name": name,
        "policy": configuration["scheduler"].get("policy", "credit-greedy"),
        "flavourWeights": weights,
        "flavours": [
            {"name": f["name"], "precision": f["precision"], "weight": weights[f["name"]]}
            for f in configuration["flavours"]
        ],
        "validUntil": valid_until,
        "credits": {"balance": 0.12, "velocity": 0.01, "target": 0.1, "min": -0.5, "max": 0.5},
        "avgPrecision": 81.25,
        "processing": {
            "throttle": throttle,
            "creditsRatio": 0.62,
            "intensityRatio": 0.8,
            "ceilings": ceilings,
        },
        "carbon": {
            "now": 120,
            "next": 135,
            "index": "moderate",
            "source": "trace:gb-national-2023-03",
            "stale": False,
            "slots": [
                {"from": "2026-12-04T20:00:00Z", "to": "2026-12-04T20:30:00Z", "intensity": 120},
                {"from": "2026-12-04T20:30:00Z", "to": "2026-12-04T21:00:00Z", "intensity": 135},
            ],
        },
        "evaluator": configuration["scheduler"].get("evaluator", "router"),
        "diagnostics": {"allowance": 0.4},
        "state": {"ledger": {"balance": 0.12, "velocity": 0.01, "updatedAt": "2026-12-04T20:00:00Z"}},
    }


class FakeEngine:
    """Engine client double: records every configuration it receives."""

    def __init__(self, *, error: Exception | None = None, **decision_options):
        self.error = error
        self.decision_options = decision_options
        self.calls: list[tuple[str, str, dict]] = []

    def put_config(self, namespace: str, name: str, configuration: dict) -> dict:
        self.calls.append((namespace, name, configuration))
        if self.error is not None:
            raise self.error
        return fake_decision(configuration, namespace=namespace, name=name, **self.decision_options)


def unreachable_engine() -> FakeEngine:
    return FakeEngine(
        error=EngineUnavailable("PUT http://127.0.0.1:9/config/shop/checkout failed: ConnectionError")
    )


class EngineServer:
    """An HTTP engine on loopback: fake decisions after `delay` seconds, or a fixed bad response.

    `answer` selects the response: "decision" (a `fake_decision` for the body sent),
    "empty" (200 with `{}`) or "error" (HTTP 500).
    """

    def __init__(self, *, delay: float = 0.0, answer: str = "decision"):
        self.delay = delay
        self.answer = answer
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def _app(self, environ, start_response):
        request = Request(environ)
        body = request.get_json(silent=True) or {}
        time.sleep(self.delay)
        if self.answer == "error":
            response = Response('{"error": "boom"}', status=500, mimetype="application/json")
        elif self.answer == "empty":
            response = Response("{}", status=200, mimetype="application/json")
        else:
            _, namespace, name = request.path.strip("/").split("/")
            decision = fake_decision(body, namespace=namespace, name=name)
            response = Response(json.dumps(decision), status=200, mimetype="application/json")
        return response(environ, start_response)

    def __enter__(self) -> EngineServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
