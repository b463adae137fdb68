"""Loopback servers the buffer tests run against: a fake engine and echoing flavours."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import pika
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from buffer.config import BufferConfig, FlavourSpec
from buffer.topology import delete_topology

logging.getLogger("werkzeug").setLevel(logging.WARNING)

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
FLAVOURS = (FlavourSpec("high", 100), FlavourSpec("mid", 50), FlavourSpec("low", 25))


class LoopbackServer:
    """A WSGI app served by werkzeug on a free loopback port, in a daemon thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()


@dataclass
class FlavourLoad:
    """What a test flavour saw: requests to /slow and the most it served at once."""

    slow_hits: int = 0
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            self.slow_hits += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


def flavour_app(name: str, load: FlavourLoad | None = None) -> Flask:
    """A flavour that echoes what it received, plus /slow and /status endpoints."""
    app = Flask(f"flavour-{name}")
    load = load or FlavourLoad()
    app.config["LOAD"] = load

    @app.route("/status/<int:code>", methods=["GET", "POST", "PATCH"])
    def status(code: int):
        return Response(f"status {code}", status=code)

    @app.route("/slow")
    def slow():
        load.enter()
        try:
            time.sleep(float(request.args.get("seconds", "1")))
        finally:
            load.leave()
        return jsonify(flavour=name, slept=float(request.args.get("seconds", "1")))

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def echo(path: str):
        body = request.get_data()
        reply = jsonify(
            flavour=name,
            method=request.method,
            path=request.path,
            query=request.query_string.decode(),
            headers={key.lower(): value for key, value in request.headers.items()},
            body=base64.b64encode(body).decode(),
        )
        reply.headers["X-Flavour"] = name
        reply.headers["Set-Cookie"] = "a=1"
        return reply

    return app


@dataclass
class FakeEngine:
    """The two engine endpoints the buffer calls, with a decision tests can change."""

    decision: dict | None = None
    feedback: list[dict] = field(default_factory=list)
    fail_feedback: bool = False
    schedule_calls: int = 0

    def app(self) -> Flask:
        app = Flask("fake-engine")

        @app.get("/schedule/<ns>/<name>")
        def schedule(ns: str, name: str):
            self.schedule_calls += 1
            if self.decision is None:
                return jsonify(error="unknown session"), 404
            return jsonify(self.decision)

        @app.post("/feedback/<ns>/<name>")
        def feedback(ns: str, name: str):
            if self.fail_feedback:
                return jsonify(error="engine busy"), 503
            self.feedback.append(request.get_json())
            return jsonify(accepted=sum(request.get_json()["counts"].values()))

        return app


def decision(
    weights: dict[str, int], *, throttle: float = 1.0, evaluator: str = "router", valid_for: int = 60
):
    """An engine decision shaped like the engine API's, valid for `valid_for` seconds."""
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + valid_for))
    precisions = {f.name: f.precision for f in FLAVOURS}
    return {
        "namespace": "test",
        "name": "svc",
        "policy": "manual",
        "flavourWeights": weights,
        "flavours": [{"name": n, "precision": precisions[n], "weight": w} for n, w in weights.items()],
        "validUntil": until,
        "processing": {"throttle": throttle},
        "evaluator": evaluator,
    }


def unique_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def make_config(**overrides) -> BufferConfig:
    settings = dict(
        flavours=FLAVOURS,
        namespace=unique_namespace(),
        schedule_name="svc",
        service="svc",
        rabbitmq_url=RABBITMQ_URL,
        request_timeout=5.0,
        forward_timeout=4.0,
        forward_backoff=0.05,
        feedback_interval=0.5,
        heartbeat=10,
        prefetch=8,
        seed=7,
    )
    settings.update(overrides)
    return BufferConfig(**settings)


def delete_test_topology(config: BufferConfig) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))  # never through a proxy
    try:
        delete_topology(connection.channel(), config)
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, *, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def config_env(config: BufferConfig, **extra: str) -> dict[str, str]:
    """Environment variables that make `BufferConfig.from_env()` rebuild `config`."""
    import os

    env = dict(os.environ)
    env.update(
        FLAVOURS=",".join(f"{f.name}:{f.precision}" for f in config.flavours),
        SCHEDULE_NAMESPACE=config.namespace,
        SCHEDULE_NAME=config.schedule_name,
        SERVICE_NAME=config.service,
        RABBITMQ_URL=config.rabbitmq_url,
        ENGINE_URL=config.engine_url,
        REQUEST_TIMEOUT=str(config.request_timeout),
        FORWARD_TIMEOUT=str(config.forward_timeout),
        FORWARD_BACKOFF_SECONDS=str(config.forward_backoff),
        RABBITMQ_HEARTBEAT=str(config.heartbeat),
        CONSUMER_PREFETCH=str(config.prefetch),
        FEEDBACK_INTERVAL_SECONDS=str(config.feedback_interval),
        FLAVOUR_URLS=",".join(f"{name}={url}" for name, url in config.flavour_urls.items()),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class ConnectionCallbacks:
    """Every callback a pika connection made, in order; subclasses add the event a test waits on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def opened(self, connection) -> None:
        self._record("open", connection)

    def open_failed(self, connection, error) -> None:
        self._record("open_error", error)

    def closed(self, connection, reason) -> None:
        self._record("close", reason)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def _record(self, name: str, value: object) -> None:
        self.calls.append((name, value))
        self.changed.set()


def adapter_parameters(url: str, **settings) -> pika.URLParameters:
    """Return connection parameters for one attempt with short timeouts, as the adapter tests use."""
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = settings.get("socket_timeout", 2.0)
    parameters.stack_timeout = settings.get("stack_timeout", 5.0)
    parameters.heartbeat = settings.get("heartbeat", 30)
    return parameters
