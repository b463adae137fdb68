"""Flask application factory of carbonstat.

`create_app(config)` builds one flavour of the service. The flavour comes from
`config["FLAVOUR"]`, else from the `CARBONSTAT_FLAVOUR` environment variable,
else `high`. Run it under gunicorn with the factory syntax:

    CARBONSTAT_FLAVOUR=mid gunicorn 'carbonstat.app:create_app()'

Endpoints: `POST /avg`, `GET /healthz`, `GET /metrics` (Prometheus text).
Every error is a JSON body `{"error": message}` with a meaningful status code.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, Response, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from carbonstat.flavours import InvalidNumbers, average, flavour_named, validate_numbers

log = logging.getLogger("carbonstat")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


def create_app(config: dict | None = None) -> Flask:
    """Build the carbonstat app for one flavour; raise ValueError on an unknown flavour."""
    settings = dict(config or {})
    flavour = flavour_named(settings.get("FLAVOUR") or os.environ.get("CARBONSTAT_FLAVOUR") or "high")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(
        settings.get("MAX_BODY_BYTES")
        or os.environ.get("CARBONSTAT_MAX_BODY_BYTES")
        or DEFAULT_MAX_BODY_BYTES
    )
    app.config["FLAVOUR"] = flavour.name
    metrics = _register_metrics(flavour.name, flavour.precision)

    @app.post("/avg")
    def avg():
        started = time.perf_counter()
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            metrics["requests"].labels(flavour=flavour.name, status="400").inc()
            return _error('the body must be a JSON object such as {"numbers": [1, 2, 3]}', 400)
        try:
            numbers = validate_numbers(body.get("numbers"))
        except InvalidNumbers as exc:
            metrics["requests"].labels(flavour=flavour.name, status="400").inc()
            return _error(str(exc), 400)

        result = average(numbers, flavour)
        elapsed = time.perf_counter() - started
        metrics["requests"].labels(flavour=flavour.name, status="200").inc()
        metrics["latency"].labels(flavour=flavour.name).observe(elapsed)
        metrics["numbers"].labels(flavour=flavour.name).inc(len(numbers[:: flavour.stride]))
        log.debug("event=avg flavour=%s count=%d", flavour.name, len(numbers))
        return jsonify(
            avg=result,
            elapsed_ms=round(elapsed * 1000.0, 3),
            flavour=flavour.name,
            precision=flavour.precision,
        )

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", flavour=flavour.name, precision=flavour.precision)

    @app.get("/metrics")
    def metrics_endpoint():
        return Response(generate_latest(metrics["exposed"]), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(exc: RequestEntityTooLarge):
        limit = app.config["MAX_CONTENT_LENGTH"]
        return _error(f"request body is larger than {limit} bytes; send fewer numbers per request", 413)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.description or exc.name, exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        log.exception("event=error flavour=%s error=%s", flavour.name, type(exc).__name__)
        return _error("internal error; see the carbonstat log", 500)

    log.info("event=start flavour=%s precision=%d stride=%d", flavour.name, flavour.precision, flavour.stride)
    return app


def _error(message: str, status: int):
    response = jsonify(error=message)
    response.status_code = status
    return response


def _register_metrics(flavour: str, precision: int) -> dict:
    """Create this app's metrics in its own registry, so several apps can share a process.

    With `PROMETHEUS_MULTIPROC_DIR` set (several gunicorn workers), `/metrics`
    aggregates every worker's files instead of reading this process alone.
    """
    registry = CollectorRegistry()
    metrics = {
        "requests": Counter(
            "carbonstat_requests_total",
            "Requests to POST /avg by flavour and status code.",
            ["flavour", "status"],
            registry=registry,
        ),
        "latency": Histogram(
            "carbonstat_request_duration_seconds",
            "Time to compute one average, by flavour.",
            ["flavour"],
            registry=registry,
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
        ),
        "numbers": Counter(
            "carbonstat_numbers_read_total",
            "Numbers read from requests, after the flavour's sampling.",
            ["flavour"],
            registry=registry,
        ),
    }
    precision_gauge = Gauge(
        "carbonstat_flavour_precision",
        "Precision of this flavour, 0-100.",
        ["flavour"],
        registry=registry,
        multiprocess_mode="max",
    )
    precision_gauge.labels(flavour=flavour).set(precision)

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        exposed = CollectorRegistry()
        MultiProcessCollector(exposed)
        metrics["exposed"] = exposed
    else:
        metrics["exposed"] = registry
    return metrics
