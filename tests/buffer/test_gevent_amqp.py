"""The gevent-driven pika connection against the real broker, a refused port, a silent server, a cut proxy.

These tests run the connection on gevent's event loop without monkey
patching: the connection uses gevent's sockets and primitives itself, and the
test waits with gevent calls so the loop can run.
"""

from __future__ import annotations

import socket
import uuid

import gevent
import gevent.event
import gevent.server
import pika
import pika.exceptions

from buffer.gevent_amqp import GeventAmqpConnection
from tests.buffer.helpers import RABBITMQ_URL, ConnectionCallbacks, adapter_parameters, free_port
from tests.buffer.tcp_proxy import TcpProxy


class Outcomes(ConnectionCallbacks):
    """Every callback the connection made, in order, and a gevent event set by each."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = gevent.event.Event()

    def wait(self, timeout: float = 5.0) -> None:
        assert self.changed.wait(timeout), "no connection callback within the timeout"
        self.changed.clear()


def connect(url: str, outcomes: Outcomes, **settings) -> GeventAmqpConnection:
    return GeventAmqpConnection(
        adapter_parameters(url, **settings),
        on_open_callback=outcomes.opened,
        on_open_error_callback=outcomes.open_failed,
        on_close_callback=outcomes.closed,
    )


def test_publish_and_consume_round_trip():
    outcomes = Outcomes()
    connection = connect(RABBITMQ_URL, outcomes)
    outcomes.wait()
    assert outcomes.names() == ["open"]

    channel_ready = gevent.event.AsyncResult()
    connection.channel(on_open_callback=channel_ready.set)
    channel = channel_ready.get(timeout=5)
    queue = f"test.gevent-amqp.{uuid.uuid4().hex}"
    declared = gevent.event.Event()
    channel.queue_declare(queue, exclusive=True, auto_delete=True, callback=lambda frame: declared.set())
    assert declared.wait(5)

    received: list[bytes] = []
    all_received = gevent.event.Event()

    def on_message(channel, method, properties, body):
        received.append(body)
        if len(received) == 20:
            all_received.set()

    channel.basic_consume(queue, on_message, auto_ack=True)
    # Twenty publishes in one greenlet pass leave in one write; the broker must still see twenty messages.
    for number in range(20):
        channel.basic_publish("", queue, f"message {number}".encode())
    assert all_received.wait(5)
    assert received == [f"message {number}".encode() for number in range(20)]

    connection.close()
    outcomes.wait()
    assert outcomes.names() == ["open", "close"]
    assert isinstance(outcomes.calls[1][1], pika.exceptions.ConnectionClosedByClient)


def test_refused_port_reports_open_error_once():
    outcomes = Outcomes()
    connect(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", outcomes)
    outcomes.wait()
    gevent.sleep(0.2)  # a second callback would arrive here
    assert outcomes.names() == ["open_error"]
    assert isinstance(outcomes.calls[0][1], pika.exceptions.AMQPConnectionError)
    assert "failed" in str(outcomes.calls[0][1])


def test_silent_server_times_out_handshake():
    accepted: list[socket.socket] = []
    release = gevent.event.Event()

    def hold(sock, address):
        accepted.append(sock)
        release.wait(5)  # the connection stays open and silent until the test ends

    server = gevent.server.StreamServer(("127.0.0.1", 0), hold)
    server.start()
    try:
        outcomes = Outcomes()
        connect(f"amqp://guest:guest@127.0.0.1:{server.server_port}/%2F", outcomes, stack_timeout=0.3)
        outcomes.wait(timeout=3.0)
        gevent.sleep(0.2)
        assert outcomes.names() == ["open_error"]
        assert "timed out" in str(outcomes.calls[0][1])
        assert len(accepted) == 1
    finally:
        release.set()
        server.stop()


def test_cut_connection_reports_close_once():
    host, port = pika.URLParameters(RABBITMQ_URL).host, pika.URLParameters(RABBITMQ_URL).port
    proxy = TcpProxy((host, port))  # listens from the start
    try:
        outcomes = Outcomes()
        connection = connect(f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F", outcomes)
        outcomes.wait()
        assert outcomes.names() == ["open"]

        proxy.cut()
        outcomes.wait()
        gevent.sleep(0.2)
        assert outcomes.names() == ["open", "close"]
        assert isinstance(outcomes.calls[1][1], pika.exceptions.StreamLostError)
        assert connection.is_closed
    finally:
        proxy.cut()
