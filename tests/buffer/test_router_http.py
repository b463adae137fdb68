"""The router under a real gunicorn: slow request bodies, odd methods and stop settings."""

from __future__ import annotations

import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from flask import Flask

from tests.buffer.helpers import LoopbackServer, config_env, decision, free_port, wait_for

pytestmark = pytest.mark.rabbitmq

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUEST_TIMEOUT = 2.0
THREADS = 2


@pytest.fixture(params=["gevent_pywsgi", "gevent", "gthread"])
def small_router(request, make_stack, engine, tmp_path):
    """A gunicorn router with 1 worker (2 threads under gthread), a 2 s request timeout and a consumer."""
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(request_timeout=REQUEST_TIMEOUT, forward_timeout=1.5)
    process, port = start_router(stack.config, worker_class=request.param, log_path=tmp_path / "gunicorn.log")
    yield port
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def start_router(config, *, worker_class: str, log_path, **settings: str) -> tuple[subprocess.Popen, int]:
    """Start gunicorn with the router's settings file and wait until it is healthy.

    `settings` are extra environment variables, which override the defaults here.
    """
    port = free_port()
    overrides = {
        "ROUTER_BIND": f"127.0.0.1:{port}",
        "ROUTER_WORKERS": "1",
        "ROUTER_THREADS": str(THREADS),
        "ROUTER_WORKER_CLASS": worker_class,
    }
    overrides.update(settings)
    env = config_env(config, **overrides)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "buffer/gunicorn_router.py", "buffer.router:create_app()"],
        cwd=REPO_ROOT,
        env=env,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )
    assert wait_for(lambda: _healthy(port), timeout=15), "router did not start"
    return process, port


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def open_stalled_body(port: int) -> socket.socket:
    """Send headers announcing a 100-byte body, then only its first byte."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /echo HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    return sock


def read_response(sock: socket.socket, *, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
                break
    except TimeoutError:
        pass
    return data


def test_stalled_body_gets_408_by_deadline(small_router):
    started = time.monotonic()
    with open_stalled_body(small_router) as sock:
        response = read_response(sock, timeout=REQUEST_TIMEOUT + 5)
        elapsed = time.monotonic() - started
        sock.settimeout(5)
        after_response = sock.recv(100)

    assert response.startswith(b"HTTP/1.1 408"), response[:80]
    assert b"application/json" in response
    assert b"request body" in response
    assert elapsed < REQUEST_TIMEOUT + 1.0
    assert after_response == b"", "the router kept the connection open"


def test_trickled_body_gets_408_by_deadline(small_router):
    sock = open_stalled_body(small_router)
    stop = threading.Event()

    def trickle():
        # One byte every 0.2 s keeps every single read busy but never ends the body.
        while not stop.wait(0.2):
            try:
                sock.sendall(b" ")
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    try:
        response = read_response(sock, timeout=REQUEST_TIMEOUT + 15)
    finally:
        stop.set()
        sock.close()
    elapsed = time.monotonic() - started

    assert response.startswith(b"HTTP/1.1 408"), response[:80]
    assert elapsed < REQUEST_TIMEOUT + 1.0


def test_stalled_bodies_do_not_starve_threads(small_router):
    stalled = [open_stalled_body(small_router) for _ in range(3 * THREADS)]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        reply = requests.post(f"http://127.0.0.1:{small_router}/echo", json={"n": 1}, timeout=20)
        elapsed = time.monotonic() - started
    finally:
        for sock in stalled:
            sock.close()

    assert reply.status_code == 200
    assert reply.json()["flavour"] == "high"
    # Three rounds of stalled bodies on two threads, each ended at the request timeout.
    assert elapsed < 3 * REQUEST_TIMEOUT + 2.0


@pytest.mark.parametrize("request_line", ["TRACE /echo", "CONNECT router:443", "PROPFIND /echo", "BREW /pot"])
def test_unsupported_method_gets_json_405(small_router, request_line):
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(f"{request_line} HTTP/1.1\r\nHost: router\r\nContent-Length: 0\r\n\r\n".encode())
        response = read_response(sock, timeout=5)
    head, _, body = response.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 405")
    assert b"Content-Type: application/json" in head
    assert b"Allow: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT" in head
    assert body.startswith(b'{"error":')


def gunicorn_settings(monkeypatch, **env: str) -> dict:
    for key in ("REQUEST_TIMEOUT", "ROUTER_GRACEFUL_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FLAVOURS", "high:100")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(os.path.join(REPO_ROOT, "buffer", "gunicorn_router.py"))


def test_graceful_timeout_follows_request_timeout(monkeypatch):
    assert gunicorn_settings(monkeypatch)["graceful_timeout"] == 32
    assert gunicorn_settings(monkeypatch, REQUEST_TIMEOUT="5")["graceful_timeout"] == 7
    assert gunicorn_settings(monkeypatch, REQUEST_TIMEOUT="2.5")["graceful_timeout"] == 5


def test_graceful_timeout_can_be_set(monkeypatch):
    settings = gunicorn_settings(monkeypatch, REQUEST_TIMEOUT="5", ROUTER_GRACEFUL_TIMEOUT="3")

    assert settings["graceful_timeout"] == 3
    assert isinstance(settings["graceful_timeout"], int)
    assert settings["timeout"] > 5


def test_graceful_timeout_rejects_text(monkeypatch):
    with pytest.raises(SystemExit, match="ROUTER_GRACEFUL_TIMEOUT='soon' is invalid"):
        gunicorn_settings(monkeypatch, ROUTER_GRACEFUL_TIMEOUT="soon")


def test_worker_class_defaults_to_gevent_pywsgi(monkeypatch):
    monkeypatch.delenv("ROUTER_WORKER_CLASS", raising=False)

    assert gunicorn_settings(monkeypatch)["worker_class"] == "buffer.gevent_worker.RouterPyWSGIWorker"
    assert gunicorn_settings(monkeypatch, ROUTER_WORKER_CLASS="gthread")["worker_class"] == "gthread"


@pytest.mark.parametrize(
    ("name", "value"),
    [("ROUTER_WORKER_CLASS", "eventlet"), ("ROUTER_WORKERS", "0"), ("ROUTER_WORKER_CONNECTIONS", "many")],
)
def test_router_settings_reject_invalid_values(monkeypatch, name, value):
    with pytest.raises(SystemExit, match=f"{name}='{value}' is invalid"):
        gunicorn_settings(monkeypatch, **{name: value})


@pytest.fixture
def other_host():
    """A loopback server that records every request, standing in for a host the consumer must not call."""
    hits = []
    app = Flask("other-host")

    @app.route("/<path:path>")
    def hit(path: str):
        hits.append(path)
        return "reached"

    server = LoopbackServer(app)
    yield server, hits
    server.close()


@pytest.mark.parametrize("target", ["@127.0.0.1:{port}/hit", "127.0.0.1:{port}/hit", "*"])
def test_request_target_without_slash_gets_400(small_router, other_host, target):
    server, hits = other_host
    port = server.url.rsplit(":", 1)[1]
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(f"GET {target.format(port=port)} HTTP/1.1\r\nHost: router\r\n\r\n".encode())
        response = read_response(sock, timeout=5)

    assert response.startswith(b"HTTP/1.1 400"), response[:80]
    assert hits == []


def test_absolute_form_target_relays_its_path(small_router):
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(b"GET http://router.example/items/7?x=1 HTTP/1.1\r\nHost: router.example\r\n\r\n")
        response = read_response(sock, timeout=5)
    head, _, body = response.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    echoed = json.loads(body)
    assert echoed["path"] == "/items/7"
    assert echoed["query"] == "x=1"


def test_folded_header_gets_400_or_unfolded(small_router):
    # gunicorn's parser rejects obsolete line folding with 400. pywsgi's keeps the line break
    # in the value, which the consumer would refuse to send (400), so the router unfolds it.
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: router\r\nX-Folded: one\r\n  two\r\nConnection: close\r\n\r\n"
        )
        response = read_response(sock, timeout=5)
    head, _, body = response.partition(b"\r\n\r\n")

    assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 400")), head[:80]
    if head.startswith(b"HTTP/1.1 200"):
        assert json.loads(body)["headers"]["x-folded"] == "one two"


def open_idle_keepalive(port: int) -> socket.socket:
    """Send one keep-alive request, read its whole response and leave the connection idle."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: router\r\n\r\n")
    response = read_response(sock, timeout=5)
    assert response.startswith(b"HTTP/1.1 200"), response[:80]
    return sock


def test_idle_keepalive_connection_is_closed(small_router):
    # gunicorn's settings file sets keepalive = 5 seconds.
    with open_idle_keepalive(small_router) as sock:
        sock.settimeout(5 + 3)
        started = time.monotonic()
        try:
            after_idle = sock.recv(100)
        except TimeoutError:
            after_idle = None
        elapsed = time.monotonic() - started

    assert after_idle == b"", "the router kept an idle keep-alive connection open"
    assert elapsed < 5 + 2


@pytest.mark.parametrize("worker_class", ["gevent_pywsgi", "gthread"])
def test_sigterm_with_idle_keepalive_stops_promptly(make_stack, engine, tmp_path, worker_class):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(request_timeout=10.0, forward_timeout=8.0)
    process, port = start_router(stack.config, worker_class=worker_class, log_path=tmp_path / "gunicorn.log")
    try:
        reply = requests.get(f"http://127.0.0.1:{port}/echo", timeout=10)
        idle = open_idle_keepalive(port)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        elapsed = time.monotonic() - started
        idle.close()
    finally:
        if process.poll() is None:
            process.kill()

    assert reply.status_code == 200
    # An idle connection has no request to finish, so it must not hold the
    # worker for its graceful timeout of 12 s.
    assert elapsed < 3.0
    assert "Worker graceful timeout" not in (tmp_path / "gunicorn.log").read_text()


SMUGGLED = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: router\r\n\r\n"


@pytest.mark.parametrize(
    "fields",
    [
        b"Bad Name: x\r\nContent-Length: %d\r\n",  # pywsgi alone would drop the Content-Length
        b"X-A : v\r\nContent-Length: %d\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n",
        b"Content-Length: %d\r\nContent-Length: 0\r\n",
        b"Content-Length: +%d\r\n",
        b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n",
    ],
    ids=["space-in-name", "space-before-colon", "te-and-cl", "two-cl", "signed-cl", "te-identity"],
)
def test_ambiguous_framing_gets_400_and_nothing_smuggled(small_router, fields):
    # The body is a whole second request: a parser that misreads the framing would respond to it too.
    head = b"POST /echo HTTP/1.1\r\nHost: router\r\n" + fields.replace(b"%d", b"%d" % len(SMUGGLED))
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(head + b"\r\n" + SMUGGLED)
        sock.settimeout(5)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass

    assert received.startswith(b"HTTP/1.1 400"), received[:80]
    assert received.count(b"HTTP/1.1 ") == 1, received[:300]
    assert b"smuggled" not in received


def read_until_closed(sock: socket.socket, *, timeout: float) -> tuple[bytes, bool]:
    """Read until the server closes the connection; return what arrived and whether it closed in time."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, False
    return received, True


def test_oversized_body_gets_413_and_closed(small_router):
    # The body never follows. Reading it to keep the connection alive would hold it open.
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: router\r\nContent-Length: 1048577\r\n\r\n")
        received, closed = read_until_closed(sock, timeout=5)

    assert received.startswith(b"HTTP/1.1 413"), received[:80]
    assert closed, "the router kept the connection open after 413"


@pytest.mark.parametrize(
    "body",
    [b"zz\r\n", b"3\r\nabcdef\r\n0\r\n\r\n", b"ffffffffffffffffffff\r\n"],
    ids=["non-hex-size", "chunk-longer-than-size", "huge-size"],
)
def test_malformed_chunked_body_gets_400(small_router, body):
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: router\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        received, closed = read_until_closed(sock, timeout=REQUEST_TIMEOUT + 5)

    # gunicorn's chunked reader accepts any chunk size and waits for that much
    # data, so there the request timeout ends it with 408.
    assert received.startswith((b"HTTP/1.1 400", b"HTTP/1.1 408")), received[:80]
    if body != b"ffffffffffffffffffff\r\n":
        assert received.startswith(b"HTTP/1.1 400"), received[:80]
    assert closed


def test_body_cut_short_gets_400(small_router):
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: router\r\nContent-Length: 100\r\n\r\nabc")
        sock.shutdown(socket.SHUT_WR)
        received, closed = read_until_closed(sock, timeout=5)

    assert received.startswith(b"HTTP/1.1 400"), received[:80]
    assert closed


def test_expect_header_is_not_relayed(small_router):
    body = b'{"a": 1}'
    with socket.create_connection(("127.0.0.1", small_router)) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: router\r\nExpect: 100-continue\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        received, _ = read_until_closed(sock, timeout=5)
    final = received[received.rindex(b"HTTP/1.1 ") :]
    head, _, echoed = final.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    assert "expect" not in json.loads(echoed)["headers"]
