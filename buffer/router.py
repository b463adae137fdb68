"""The router: the HTTP entrypoint that hands every request to RabbitMQ.

`create_app(config)` builds a Flask app that accepts any path with the methods
in `metrics.METHODS`. For each request it picks a flavour: the one the client
forced with the `x-carbonrouter` header when forcing is enabled, otherwise a
draw from the engine's weights. It publishes the request to that flavour's
queue and relays the reply's status, headers and body. The router's own endpoints, health and
metrics, live at configurable paths that are never relayed.

Failures map to fixed statuses so clients can act on them. An unknown forced
flavour is 400, a body that has not arrived by the deadline is 408 and a body
over the limit is 413. A broker that cannot take the message is 503 with
`Retry-After`, and no reply before the request timeout is 504. Every
request gets a response by its deadline, because reading the body,
connecting, publishing and waiting all draw on the same budget.

Serve it with gunicorn's threaded workers, for example
`gunicorn -c buffer/gunicorn_router.py 'buffer.router:create_app()'`.
"""

from __future__ import annotations

import logging
import random
import re
import socket
import threading
import time
from urllib.parse import quote, urlsplit

from flask import Flask, Response, jsonify, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException

from buffer import metrics
from buffer.body_deadline import read_within
from buffer.config import BufferConfig, FlavourSpec
from buffer.messages import RelayedRequest, end_to_end_headers
from buffer.rpc import BrokerUnavailable, ReplyTimeout, RpcClient
from buffer.schedule import ScheduleCache
from buffer.topology import routing_key

log = logging.getLogger(__name__)

FORCE_HEADER = "x-carbonrouter"
# A line break inside a header value, which pywsgi keeps from obsolete line folding.
# RFC 9112 section 5.2 lets a server replace each fold with a space before forwarding.
_LINE_FOLD = re.compile(r"[ \t]*(?:\r\n|\r|\n)[ \t]*")
ROUTED_METHODS = sorted(metrics.METHODS)


class RouterError(Exception):
    """An error response the router returns itself, with `status` and a message for the client."""

    def __init__(self, status: int, message: str, *, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class LogLimiter:
    """At most one log line per key and interval; the next line reports how many were suppressed.

    During a broker outage every request fails the same way, and one line per
    second with a count carries as much information as hundreds of identical lines.
    """

    def __init__(self, *, interval: float) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        """Return the number of lines suppressed since the last one, or None to skip this line."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self._interval) < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)


class Router:
    """Flavour choice and relaying, independent of Flask's request object."""

    def __init__(self, config: BufferConfig, *, schedule: ScheduleCache | None = None) -> None:
        self.config = config
        self.schedule = schedule or ScheduleCache(config, on_fallback=metrics.ROUTER_FALLBACK.set)
        self._rng = random.Random(config.seed)
        self.rpc = RpcClient(config)
        self._log_limiter = LogLimiter(interval=1.0)

    def choose_flavour(self, forced: str | None) -> tuple[FlavourSpec, bool]:
        """Return the flavour for a request and whether the client forced it."""
        if forced and self.config.forcing_enabled:
            flavour = self._forced_flavour(forced.strip())
            return flavour, True
        name = self.schedule.current.draw(self._rng)
        return self.config.flavour_named(name), False

    def relay(self, relayed: RelayedRequest, flavour: FlavourSpec, *, deadline: float):
        """Send a request through the broker and return the flavour's response."""
        try:
            return self.rpc.call(relayed, routing_key=routing_key(self.config, flavour), deadline=deadline)
        except BrokerUnavailable as error:
            metrics.ROUTER_BROKER_ERRORS.labels(reason=error.reason).inc()
            suppressed = self._log_limiter.admit(f"broker_unavailable/{error.reason}")
            if suppressed is not None:
                log.warning(
                    "event=broker_unavailable schedule=%s flavour=%s reason=%s error=%s suppressed=%d",
                    self.config.schedule_key,
                    flavour.name,
                    error.reason,
                    error,
                    suppressed,
                )
            raise RouterError(
                503,
                "the message broker is unavailable; retry after the delay in Retry-After",
                headers={"Retry-After": str(self.config.retry_after)},
            ) from None
        except ReplyTimeout:
            metrics.ROUTER_BROKER_ERRORS.labels(reason="timeout").inc()
            suppressed = self._log_limiter.admit("reply_timeout")
            if suppressed is not None:
                log.warning(
                    "event=reply_timeout schedule=%s flavour=%s timeout=%.1f suppressed=%d",
                    self.config.schedule_key,
                    flavour.name,
                    self.config.request_timeout,
                    suppressed,
                )
            raise RouterError(
                504, f"no reply from flavour {flavour.name} within {self.config.request_timeout:g} s"
            ) from None

    def close(self) -> None:
        """Stop the schedule refresher and close the broker connection."""
        self.schedule.stop()
        self.rpc.close()

    def _forced_flavour(self, value: str) -> FlavourSpec:
        flavour = self.config.flavour_named(value)
        if flavour is None and value.isdigit():
            flavour = next((f for f in self.config.flavours if f.precision == int(value)), None)
        if flavour is None:
            known = ", ".join(f"{f.name} ({f.precision})" for f in self.config.flavours)
            raise RouterError(
                400,
                f"{FORCE_HEADER}: {value!r} is not a known flavour; use a name or precision of: {known}",
            )
        return flavour


_BODY_LOG_LIMITER = LogLimiter(interval=1.0)


def create_app(config: BufferConfig | None = None, *, router: Router | None = None) -> Flask:
    """Build the router's Flask app; without arguments, read the configuration from the environment."""
    config = config or BufferConfig.from_env()
    router = router or Router(config)
    app = Flask("buffer.router")
    app.config["BUFFER_ROUTER"] = router

    @app.get(config.health_path)
    def health():
        return jsonify(status="ok", schedule=router.schedule.current.source)

    @app.get(config.metrics_path)
    def metrics_endpoint():
        body, content_type = metrics.render_metrics()
        return Response(body, content_type=content_type)

    def entry(path: str):
        return _handle(router)

    for rule in ("/", "/<path:path>"):
        app.add_url_rule(
            rule,
            endpoint=f"relay{rule}",
            view_func=entry,
            methods=ROUTED_METHODS,
            defaults={"path": ""} if rule == "/" else None,
            provide_automatic_options=False,
        )
    _register_error_handlers(app, router)
    router.schedule.start()
    return app


def _register_error_handlers(app: Flask, router: Router) -> None:
    # Requests Flask rejects before the relay view (a method outside METHODS)
    # and unexpected failures still get a JSON body and an ingress count.
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = jsonify(error=f"{error.name}: {error.description}")
        response.status_code = error.code or 500
        if error.code == 405:
            response.headers["Allow"] = ", ".join(ROUTED_METHODS)
        _count_ingress(response.status_code)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception(
            "event=router_error schedule=%s method=%s error=%r",
            router.config.schedule_key,
            metrics.method_label(request.method),
            error,
        )
        _count_ingress(500)
        response = jsonify(error="internal router error; the request was not relayed")
        response.status_code = 500
        return response


def _count_ingress(status: int) -> None:
    metrics.ROUTER_INGRESS.labels(
        method=metrics.method_label(request.method), status_class=metrics.status_class(status)
    ).inc()


def _handle(router: Router) -> Response:
    started = time.monotonic()
    method = metrics.method_label(request.method)
    flavour_label = "none"
    try:
        flavour, forced = router.choose_flavour(request.headers.get(FORCE_HEADER))
        flavour_label = flavour.name
        relayed = _relayed_request(router.config, flavour=flavour, forced=forced, started=started)
        reply = router.relay(relayed, flavour, deadline=started + router.config.request_timeout)
        response = Response(reply.body, status=reply.status, headers=list(end_to_end_headers(reply.headers)))
    except RouterError as error:
        response = jsonify(error=str(error))
        response.status_code = error.status
        response.headers.update(error.headers)

    status_class = metrics.status_class(response.status_code)
    metrics.labelled(metrics.ROUTER_INGRESS, method, status_class).inc()
    if flavour_label != "none":
        metrics.labelled(metrics.ROUTER_REQUESTS, flavour_label, method, status_class).inc()
        metrics.labelled(metrics.ROUTER_LATENCY, flavour_label).observe(time.monotonic() - started)
    return response


def _unfold(value: str) -> str:
    if "\n" not in value and "\r" not in value:
        return value  # the usual case, without the cost of a regex search
    return _LINE_FOLD.sub(" ", value)


def _relayed_request(
    config: BufferConfig, *, flavour: FlavourSpec, forced: bool, started: float
) -> RelayedRequest:
    body = _read_body(config, deadline=started + config.request_timeout)
    headers = tuple(
        (key, _unfold(value))
        for key, value in end_to_end_headers(request.headers.items(), keep_content_encoding=True)
        if key.lower() != FORCE_HEADER
    )
    remaining = config.request_timeout - (time.monotonic() - started)
    return RelayedRequest(
        method=request.method,
        path=_raw_path(),
        query=request.query_string.decode("latin-1"),
        headers=headers,
        body=body,
        flavour=flavour.name,
        forced=forced,
        deadline_ms=int((time.time() + remaining) * 1000),
    )


def _read_body(config: BufferConfig, *, deadline: float) -> bytes:
    limit = config.max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _body_error(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if declared == 0 or (declared is None and not chunked):
        return b""  # HTTP/1.1 gives such a request no body, so there is nothing to wait for
    # Other servers and the test client expose no socket, so their reads have no deadline.
    try:
        body, expired = read_within(request.stream, limit + 1, sock=_client_socket(), deadline=deadline)
    except (OSError, ValueError, ParseException) as error:
        # pywsgi and gunicorn raise these for a malformed chunk or a body cut short.
        suppressed = _BODY_LOG_LIMITER.admit("invalid_body")
        if suppressed is not None:
            log.warning(
                "event=invalid_body schedule=%s error=%r suppressed=%d",
                config.schedule_key,
                error,
                suppressed,
            )
        raise _body_error(400, f"request body is malformed or ended early: {error}") from None
    if expired:
        _log_body_timeout(config, declared=declared)
        raise RouterError(
            408,
            f"request body did not arrive within the request timeout of {config.request_timeout:g} s; "
            "send the whole body promptly",
        )
    if len(body) > limit:
        raise _body_error(413, f"request body exceeds the limit of {limit} bytes")
    if declared is not None and len(body) < declared:
        # gunicorn's own workers hand over a body cut short by the client as it is.
        raise _body_error(400, f"request body ended after {len(body)} of {declared} bytes")
    return body


def _body_error(status: int, message: str) -> RouterError:
    """Return an error whose response ends the connection, leaving the rest of the body unread.

    Otherwise the server would read and discard the rest of the body to keep
    the connection alive, for as long as the client takes to send it.
    Shutting the read side makes that read end at once.
    """
    sock = _client_socket()
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # the client is gone already
    return RouterError(status, message, headers={"Connection": "close"})


def _client_socket() -> socket.socket | None:
    """Return the client's socket, or None where the server does not expose it.

    gunicorn's own workers expose it as `gunicorn.socket`, and gevent_pywsgi as `gunicorn.sock`.
    """
    environ = request.environ
    return environ.get("gunicorn.socket") or environ.get("gunicorn.sock")


def _log_body_timeout(config: BufferConfig, *, declared: int | None) -> None:
    suppressed = _BODY_LOG_LIMITER.admit("body_timeout")
    if suppressed is not None:
        log.warning(
            "event=body_timeout schedule=%s content_length=%s timeout=%.1f suppressed=%d",
            config.schedule_key,
            declared,
            config.request_timeout,
            suppressed,
        )


def _raw_path() -> str:
    # The raw URI keeps percent-encoding exactly as the client sent it. The
    # decoded `request.path` would turn %2F into a path separator.
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not raw:
        return quote(request.path)
    target = raw.split("?", 1)[0]
    if target.startswith("/"):
        return target
    # The absolute form (`GET http://host/path`) names the router itself, so only its path is relayed.
    parts = urlsplit(target)
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return parts.path or "/"
    # gevent's pywsgi server passes any other target through (`@host:port/path`, `*`), and
    # the consumer appends the path to the flavour's base URL, where it could name another host.
    raise RouterError(400, f"request target {target[:200]!r} is invalid: it must be a path starting with /")
