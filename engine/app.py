"""The engine's HTTP API: a Flask app factory around the session store.

Handlers only parse JSON, call the store or a session, and serialise the
response. Every decision is made in `engine.session` and `engine.policies`.
Errors are JSON objects `{"error", "status", "details"?}` with a meaningful
status code: 400 invalid input, 404 unknown schedule or path, 405 wrong
method, 415 body not JSON. No traceback reaches a client.

Sessions live in this process's memory, so the engine runs as ONE gunicorn
worker with several threads (see `engine/gunicorn.conf.py`); more workers
would each hold different sessions.
"""

from __future__ import annotations

import logging
import re
import time

from flask import Flask, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from engine.config import EngineConfig
from engine.manual import validate_manual
from engine.metrics import EngineMetrics
from engine.policies import POLICIES
from engine.store import SessionStore
from engine.validation import (
    FieldError,
    ValidationError,
    parse_number,
    validate_config,
)

log = logging.getLogger(__name__)

NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Maximum requests per flavour in one feedback call. The sum of several such counts stays
# finite, so the ledger and the `accepted` figure never become Infinity.
MAX_FEEDBACK_COUNT = 1e12
# Maximum nesting of a request body. Valid bodies nest about 6 levels (a restored state holding
# a decision). Deeper input is rejected before validation, whose messages may repr values.
MAX_JSON_DEPTH = 32


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with `allow_nan=False`, so no response carries NaN or Infinity.

    Non-standard JSON breaks strict clients. A non-finite number that reaches a response
    is a bug, so it raises ValueError and the client gets the JSON 500 instead.
    """

    def dumps(self, obj, **kwargs) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


class ApiError(Exception):
    """An error response: HTTP status, message and optional per-field details."""

    def __init__(self, status: int, message: str, details: list[FieldError] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def error_response(status: int, message: str, details: list[FieldError] | None = None):
    body = {"error": message, "status": status}
    if details:
        body["details"] = [detail.to_json() for detail in details]
    return jsonify(body), status


def json_body() -> object:
    """Return the parsed JSON body; 415 when it is not declared JSON, 400 when it does not parse."""
    if not request.is_json:
        raise ApiError(415, f"request body must be JSON (Content-Type: application/json), "
                            f"got {request.content_type or 'no Content-Type'}")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # The JSON decoder recurses once per nesting level and gives up near Python's recursion limit.
        raise ApiError(400, "invalid JSON: nested too deeply") from None
    if body is None:
        raise ApiError(400, "request body is not valid JSON")
    if json_depth(body) > MAX_JSON_DEPTH:
        raise ApiError(400, "invalid JSON: nested too deeply")
    return body


def json_depth(value: object) -> int:
    """Return the nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest = 0
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def check_schedule_name(namespace: str, name: str) -> None:
    errors = []
    if not NAMESPACE.match(namespace):
        errors.append(FieldError("namespace", f"must be a lowercase DNS label, got {namespace!r}"))
    if not RESOURCE_NAME.match(name):
        errors.append(FieldError("name", f"must be a lowercase DNS subdomain, got {name!r}"))
    if errors:
        raise ApiError(400, "invalid schedule name", errors)


def validate_counts(body, *, flavours) -> dict[str, float]:
    """Validate a feedback body `{"counts": {flavour: requests}}` against the session's flavours."""
    if not isinstance(body, dict) or not isinstance(body.get("counts"), dict):
        raise ValidationError([FieldError("counts", "must be an object of flavour name to request count")])
    known = {flavour.name for flavour in flavours}
    errors: list[FieldError] = []
    counts: dict[str, float] = {}
    for name, value in body["counts"].items():
        path = f"counts.{name}"
        if name not in known:
            errors.append(FieldError(path, f"unknown flavour; known flavours are {', '.join(sorted(known))}"))
            continue
        count = parse_number(value, field_name=path, errors=errors)
        if count is not None and count < 0:
            errors.append(FieldError(path, f"must not be negative, got {count}"))
        elif count is not None and count > MAX_FEEDBACK_COUNT:
            errors.append(FieldError(path, f"must be at most {MAX_FEEDBACK_COUNT:g} requests, got {count:g}"))
        elif count is not None:
            counts[name] = count
    if errors:
        raise ValidationError(errors)
    return counts


def configure_logging(level: str) -> None:
    """Send `engine` logs to stderr at `level` unless the host process already set up logging.

    gunicorn configures only its own loggers, so without this the INFO line per
    decision change would be dropped when the app runs as `engine.app:create_app()`.
    """
    engine_logger = logging.getLogger("engine")
    engine_logger.setLevel(level)
    if logging.getLogger().handlers or engine_logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    engine_logger.addHandler(handler)


def create_app(config: EngineConfig | dict | None = None) -> Flask:
    """Build the engine app; `config=None` reads the environment through `EngineConfig.from_env`."""
    engine_config = EngineConfig.coerce(config)
    configure_logging(engine_config.log_level)
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    metrics = EngineMetrics()
    store = SessionStore(engine_config, metrics=metrics)
    app.extensions["engine.store"] = store
    app.extensions["engine.metrics"] = metrics
    app.extensions["engine.config"] = engine_config
    clock = engine_config.clock

    register_error_handlers(app)
    register_timing(app, metrics)

    def session_or_404(namespace: str, name: str):
        check_schedule_name(namespace, name)
        session = store.get(namespace, name)
        if session is None:
            raise ApiError(404, f"schedule {namespace}/{name} not found; "
                                f"send its configuration with PUT /config/{namespace}/{name} first")
        return session

    @app.put("/config/<namespace>/<name>")
    def put_config(namespace: str, name: str):
        check_schedule_name(namespace, name)
        schedule = validate_config(json_body(), policies=list(POLICIES))
        session = store.configure(namespace, name, schedule)
        return jsonify(session.decision(wall_now=clock()))

    @app.delete("/config/<namespace>/<name>")
    def delete_config(namespace: str, name: str):
        session_or_404(namespace, name)
        store.remove(namespace, name)
        return jsonify({"deleted": f"{namespace}/{name}"})

    @app.get("/schedule/<namespace>/<name>")
    def get_schedule(namespace: str, name: str):
        return jsonify(session_or_404(namespace, name).decision(wall_now=clock()))

    @app.get("/schedule")
    def get_default_schedule():
        if engine_config.default_schedule is None:
            raise ApiError(404, "no default schedule; set ENGINE_DEFAULT_SCHEDULE=namespace/name")
        namespace, name = engine_config.default_schedule.split("/", 1)
        return jsonify(session_or_404(namespace, name).decision(wall_now=clock()))

    @app.post("/schedule/<namespace>/<name>/manual")
    def post_manual(namespace: str, name: str):
        session = session_or_404(namespace, name)
        manual = validate_manual(json_body(), flavours=session.config.flavours,
                                 ttl_max=engine_config.manual_ttl_max)
        return jsonify(session.set_manual(manual, wall_now=clock()))

    @app.delete("/schedule/<namespace>/<name>/manual")
    def delete_manual(namespace: str, name: str):
        return jsonify(session_or_404(namespace, name).clear_manual(wall_now=clock()))

    @app.post("/feedback/<namespace>/<name>")
    def post_feedback(namespace: str, name: str):
        session = session_or_404(namespace, name)
        counts = validate_counts(json_body(), flavours=session.config.flavours)
        return jsonify(session.feedback(counts, wall_now=clock()))

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        return jsonify({"status": "ok", "sessions": len(store), "policies": list(POLICIES)})

    @app.get("/metrics")
    def metrics_endpoint():
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4; charset=utf-8")

    return app


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def on_api_error(error: ApiError):
        return error_response(error.status, error.message, error.details)

    @app.errorhandler(ValidationError)
    def on_validation_error(error: ValidationError):
        return error_response(400, "invalid input: " + "; ".join(
            f"{detail.field}: {detail.message}" for detail in error.errors), error.errors)

    @app.errorhandler(HTTPException)
    def on_http_error(error: HTTPException):
        response, status = error_response(error.code or 500, error.description or error.name)
        if error.code == 405:
            allowed = error.get_headers()
            response.headers.update({key: value for key, value in allowed if key == "Allow"})
        return response, status

    @app.errorhandler(Exception)
    def on_unexpected(error: Exception):
        log.exception("request failed path=%s error=%r", request.path, error)
        return error_response(500, "internal error; the engine log has the details")


def register_timing(app: Flask, metrics: EngineMetrics) -> None:
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def record_latency(response):
        started = getattr(g, "started", None)
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if started is not None:
            metrics.observe_request(route=rule, method=request.method, status=response.status_code,
                                    seconds=time.perf_counter() - started)
        return response
