"""Flask shell around the hook functions, served by gunicorn.

    gunicorn 'hooks.app:create_app()'

Routes: `POST /customize`, `POST /sync`, `GET /healthz`, `GET /metrics`.
The shell parses JSON, calls the pure function and serialises its result
with sorted keys, so the same request always gives the same bytes. Status
codes:

- 400 for a body that is not a hook request, including JSON nested deeper
  than MAX_BODY_DEPTH.
- 429 (with Retry-After) for a stale request that the hook cannot process safely.
- 503 when rendering fails.
- 500 only for a bug, and the response contains no traceback.

Every error, routing errors such as 404 and 405
included, is a JSON object `{"error": message}`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.exceptions import HTTPException

from hooks.breaker import EngineCircuitBreaker
from hooks.config import HookConfig
from hooks.engine_client import EngineClient, EngineRejected, EngineUnavailable, HttpEngine
from hooks.sync import BadRequest, CannotSync, customize, sync

log = logging.getLogger("hooks.app")

# Metacontroller requests nest about 15 levels (children -> Deployment -> pod
# template -> container -> env). The limit leaves room for that and keeps every
# recursive walk later on (schema validation, serialisation) far below Python's
# recursion limit of 1000.
MAX_BODY_DEPTH = 100


class HookMetrics:
    """Prometheus metrics of the hooks, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sync_seconds = Histogram(
            "hooks_sync_duration_seconds", "Time to handle one sync request, engine call included",
            registry=self.registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 3, 10))
        self.sync_outcomes = Counter(
            "hooks_sync_outcomes_total", "Sync requests by outcome", ["outcome"], registry=self.registry)
        self.engine_failures = Counter(
            "hooks_engine_call_failures_total", "Engine calls that failed, by reason", ["reason"],
            registry=self.registry)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class CountingEngine:
    """Engine client wrapper that counts failed calls by exception type."""

    def __init__(self, engine: EngineClient, metrics: HookMetrics):
        self.engine = engine
        self.metrics = metrics

    def put_config(self, namespace: str, name: str, configuration: dict) -> dict:
        try:
            return self.engine.put_config(namespace, name, configuration)
        except (EngineUnavailable, EngineRejected) as error:
            self.metrics.engine_failures.labels(type(error).__name__).inc()
            raise


def create_app(config: HookConfig | None = None, *, engine: EngineClient | None = None,
               clock=None) -> Flask:
    """Build the hooks app; `engine` and `clock` default to HTTP and the system clock."""
    if not logging.getLogger().handlers:
        # Under gunicorn nothing else configures logging; LOG_LEVEL picks the level.
        logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = config or HookConfig.from_env()
    metrics = HookMetrics()
    engine = engine or HttpEngine(config.engine_url, timeout=config.engine_timeout)
    engine = CountingEngine(EngineCircuitBreaker(engine, cooldown_seconds=config.engine_cooldown_seconds),
                            metrics)
    clock = clock or (lambda: datetime.now(UTC))
    app = Flask("hooks")
    app.extensions["carbonrouter_hooks"] = {"config": config, "engine": engine, "metrics": metrics}

    @app.post("/customize")
    def customize_route():
        body, error = _json_body()
        if error:
            return error
        try:
            return _json_response(customize(body))
        except BadRequest as bad:
            return _error(400, str(bad))

    @app.post("/sync")
    def sync_route():
        started = time.perf_counter()
        outcome, response = _sync_once(engine=engine, config=config, clock=clock)
        metrics.sync_outcomes.labels(outcome).inc()
        metrics.sync_seconds.observe(time.perf_counter() - started)
        return response

    @app.get("/healthz")
    def healthz():
        return _json_response({"status": "ok"})

    @app.get("/metrics")
    def metrics_route():
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

    _register_error_handlers(app)
    return app


def _register_error_handlers(app: Flask) -> None:
    """Return routing errors and unhandled exceptions as JSON instead of Werkzeug's HTML pages."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = _error(error.code or 500, f"{error.name}: {error.description}")
        # Keep the exception's own headers, such as Allow on a 405.
        for header, value in error.get_headers():
            if header.lower() != "content-type":
                response.headers[header] = value
        return response

    @app.errorhandler(Exception)
    def unhandled_error(error: Exception):
        log.exception("event=request-failed path=%s", request.path)
        return _error(500, "internal error while handling the request; see the hooks log")


def _sync_once(*, engine: EngineClient, config: HookConfig, clock) -> tuple[str, Response]:
    body, error = _json_body()
    if error:
        return "bad-request", error
    try:
        result = sync(body, engine=engine, config=config, now=clock())
    except BadRequest as bad:
        return "bad-request", _error(400, str(bad))
    except CannotSync as refused:
        # 429 makes Metacontroller requeue after Retry-After without a warning
        # event; 503 is reported as a SyncError event on the TrafficSchedule.
        log.warning("event=sync-refused transient=%s error=%s", refused.transient, refused)
        response = _error(429 if refused.transient else 503, str(refused))
        response.headers["Retry-After"] = str(int(config.retry_seconds))
        return "refused", response
    except Exception:  # a bug: log it with its traceback, tell the caller without one
        log.exception("event=sync-failed")
        return "error", _error(500, "internal error while computing the sync response; see the hooks log")
    return _outcome(result), _json_response(result)


def _outcome(result: dict) -> str:
    conditions = {c["type"]: c for c in result["status"].get("conditions", [])}
    ready = conditions.get("Ready", {})
    if ready.get("status") == "True":
        return "ready"
    return f"not-ready-{ready.get('reason', 'unknown')}"


def _json_body() -> tuple[object, Response | None]:
    raw = request.get_data()
    too_deep = _error(400, f"request body is nested deeper than {MAX_BODY_DEPTH} levels; "
                           "Metacontroller hook requests nest far less")
    try:
        body = json.loads(raw)
    except RecursionError:
        return None, too_deep
    except (ValueError, UnicodeDecodeError) as error:
        return None, _error(400, f"request body is not valid JSON: {error}")
    if _nesting_depth(body) > MAX_BODY_DEPTH:
        return None, too_deep
    return body, None


def _nesting_depth(document: object) -> int:
    """Return how many arrays and objects deep `document` nests, walking without recursion."""
    deepest = 0
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _json_response(payload: dict, status: int = 200) -> Response:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return Response(text, status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return _json_response({"error": message}, status)
