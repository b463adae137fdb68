"""The body-read watchdog on a local socket pair, without a server."""

from __future__ import annotations

import socket
import time

from buffer.body_deadline import BodyWatchdog


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Return the server and client ends of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return server, client


def test_watchdog_ends_blocked_read_at_deadline():
    watchdog = BodyWatchdog()
    server, client = tcp_pair()
    with server, client:
        started = time.monotonic()
        token = watchdog.watch(server, started + 0.3)
        data = server.recv(100)  # blocks: the client sends nothing
        elapsed = time.monotonic() - started

        assert data == b""
        assert 0.25 <= elapsed < 2.0
        assert watchdog.expired(token)
        assert watchdog.release(token) is True
        server.sendall(b"408")  # the response direction stays open
        assert client.recv(100) == b"408"


def test_watchdog_leaves_released_socket_alone():
    watchdog = BodyWatchdog()
    server, client = tcp_pair()
    with server, client:
        token = watchdog.watch(server, time.monotonic() + 0.2)
        assert watchdog.release(token) is False
        time.sleep(0.4)
        client.sendall(b"late")

        assert server.recv(100) == b"late"
        assert not watchdog.expired(token)


def test_watchdog_ignores_missing_socket():
    watchdog = BodyWatchdog()
    token = watchdog.watch(None, time.monotonic())

    assert token is None
    assert watchdog.release(token) is False
