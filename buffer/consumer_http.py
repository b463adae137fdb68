"""The consumer's HTTP server: Prometheus metrics and a health endpoint.

`serve_consumer_http(consumer, host=..., port=...)` starts a threaded WSGI
server in a daemon thread. `GET /healthz` returns 200 while the consumer is
connected to the broker and consuming, and 503 while it is connecting or
reconnecting, so a readiness probe detects a consumer that cannot reach the
broker. Every other path serves the Prometheus exposition.
"""

from __future__ import annotations

import json
import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class names it so
        pass


def health_app(ready: threading.Event):
    """Return a WSGI app for the health endpoint, reading the consumer's `ready` event."""

    def app(environ, start_response):
        if ready.is_set():
            status, body = "200 OK", {"status": "ok", "broker": "connected"}
        else:
            status, body = "503 Service Unavailable", {"status": "unavailable", "broker": "disconnected"}
        payload = json.dumps(body).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        )
        return [payload]

    return app


def consumer_wsgi_app(ready: threading.Event):
    """Return the WSGI app that serves `/healthz` from `ready` and metrics on every other path."""
    health = health_app(ready)
    metrics = make_wsgi_app()

    def app(environ, start_response):
        if environ.get("PATH_INFO") == HEALTH_PATH:
            return health(environ, start_response)
        return metrics(environ, start_response)

    return app


def serve_consumer_http(consumer, *, host: str, port: int) -> WSGIServer:
    """Start the metrics and health server for `consumer` on host:port and return it."""
    server = make_server(
        host,
        port,
        consumer_wsgi_app(consumer.ready),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="consumer-http", daemon=True).start()
    log.info(
        "event=consumer_http_started schedule=%s address=%s:%d paths=%s,/metrics",
        consumer.config.schedule_key,
        host,
        server.server_port,
        HEALTH_PATH,
    )
    return server
