"""Shared fixtures for carbon-source tests: the bundled trace, a local provider server, source cleanup."""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.carbon import close_sources
from engine.carbon.base import parse_time
from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST


@pytest.fixture(autouse=True)
def _fresh_shared_sources():
    """Each test builds its own sources, so a cached one from another test never leaks in."""
    close_sources()
    yield
    close_sources()


@pytest.fixture(scope="session")
def bundled_actuals() -> dict[datetime, float]:
    with DEFAULT_ACTUAL.open(newline="") as handle:
        return {parse_time(row["from"]): float(row["actual"]) for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def bundled_forecasts() -> dict[datetime, dict[datetime, float]]:
    snapshots: dict[datetime, dict[datetime, float]] = {}
    with DEFAULT_FORECAST.open(newline="") as handle:
        for row in csv.DictReader(handle):
            snapshots.setdefault(parse_time(row["issued_at"]), {})[parse_time(row["from"])] = float(
                row["forecast"]
            )
    return snapshots


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "carbon"


def payload(name: str) -> bytes:
    """Return a recorded provider payload from tests/fixtures/carbon."""
    return (FIXTURES / name).read_bytes()


@dataclass
class Reply:
    """One canned response of the local provider server."""

    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0


@dataclass
class ProviderServer:
    """A provider stand-in on 127.0.0.1: responds by path prefix and records every request."""

    url: str
    routes: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[tuple[str, dict]] = field(default_factory=list)

    def route(self, prefix: str, *replies: Reply) -> None:
        """Respond to paths starting with `prefix` with `replies` in order, repeating the last one."""
        self.routes[prefix] = list(replies)

    def reply_for(self, path: str) -> Reply:
        matches = [p for p in self.routes if path.startswith(p)]
        if not matches:
            return Reply(404, b'{"error": {"message": "no route in test server"}}')
        replies = self.routes[max(matches, key=len)]
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@pytest.fixture
def provider_server():
    server_state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - name fixed by http.server
            state: ProviderServer = server_state["server"]
            state.requests.append((self.path, dict(self.headers)))
            reply = state.reply_for(self.path)
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up after its timeout

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server_state["server"] = ProviderServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server_state["server"]
    httpd.shutdown()
    httpd.server_close()
