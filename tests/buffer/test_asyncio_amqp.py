"""The asyncio-driven pika connection against the real broker, a refused port, a silent server, a proxy.

Each test runs its scenario on a fresh event loop with `asyncio.run`, and
records every callback the connection makes, to prove that the open-error or
close callback comes exactly once.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
import uuid

import pika
import pika.exceptions
import pytest

from buffer.asyncio_amqp import AsyncioAmqpConnection
from tests.buffer.helpers import RABBITMQ_URL, ConnectionCallbacks, adapter_parameters, free_port
from tests.buffer.tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq

SETTLE = 0.3  # seconds to wait for a second callback that must not come


class Outcomes(ConnectionCallbacks):
    """Every callback the connection made, in order, and an asyncio event set by each."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    async def wait(self, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            pytest.fail(f"no connection callback within {timeout} s; calls so far: {self.names()}")
        self.changed.clear()


def connect(url: str, outcomes: Outcomes, **settings) -> AsyncioAmqpConnection:
    return AsyncioAmqpConnection(
        adapter_parameters(url, **settings),
        on_open_callback=outcomes.opened,
        on_open_error_callback=outcomes.open_failed,
        on_close_callback=outcomes.closed,
    )


def proxied_url(proxy: TcpProxy) -> str:
    return RABBITMQ_URL.replace("127.0.0.1:5672", proxy.address)


async def open_channel(connection: AsyncioAmqpConnection):
    opened = asyncio.get_running_loop().create_future()
    connection.channel(on_open_callback=opened.set_result)
    return await asyncio.wait_for(opened, 5)


async def declare_queue(channel) -> str:
    queue = f"test.asyncio-amqp.{uuid.uuid4().hex}"
    declared = asyncio.get_running_loop().create_future()
    channel.queue_declare(queue, exclusive=True, auto_delete=True, callback=declared.set_result)
    await asyncio.wait_for(declared, 5)
    return queue


async def silent_server(accepted: list[asyncio.Future]) -> asyncio.Server:
    """Start a loopback server that accepts connections, never sends, and records when each client closes."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.get_running_loop().create_future()
        accepted.append(closed)
        await reader.read()  # returns at the client's EOF or reset
        closed.set_result(True)
        writer.close()

    return await asyncio.start_server(hold, "127.0.0.1", 0)


def test_publish_and_consume_round_trip():
    async def scenario():
        outcomes = Outcomes()
        connection = connect(RABBITMQ_URL, outcomes)
        await outcomes.wait()
        assert outcomes.names() == ["open"]

        channel = await open_channel(connection)
        queue = await declare_queue(channel)
        received: list[bytes] = []
        all_received = asyncio.Event()

        def on_message(channel, method, properties, body):
            received.append(body)
            if len(received) == 20:
                all_received.set()

        channel.basic_consume(queue, on_message, auto_ack=True)
        # Twenty publishes in one loop pass leave in one write, and the broker must see twenty messages.
        for number in range(20):
            channel.basic_publish("", queue, f"message {number}".encode())
        await asyncio.wait_for(all_received.wait(), 5)
        assert received == [f"message {number}".encode() for number in range(20)]

        connection.close()
        await outcomes.wait()
        await asyncio.sleep(SETTLE)
        assert outcomes.names() == ["open", "close"]
        assert isinstance(outcomes.calls[1][1], pika.exceptions.ConnectionClosedByClient)
        assert connection.is_closed

    asyncio.run(scenario())


def test_refused_port_reports_open_error_once():
    async def scenario():
        outcomes = Outcomes()
        connect(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", outcomes)
        await outcomes.wait()
        await asyncio.sleep(SETTLE)
        assert outcomes.names() == ["open_error"]
        error = outcomes.calls[0][1]
        assert isinstance(error, pika.exceptions.AMQPConnectionError)
        assert "cannot connect to 127.0.0.1" in str(error)

    asyncio.run(scenario())


def test_silent_server_times_out_handshake():
    async def scenario():
        accepted: list[asyncio.Future] = []
        server = await silent_server(accepted)
        port = server.sockets[0].getsockname()[1]
        try:
            outcomes = Outcomes()
            connection = connect(f"amqp://guest:guest@127.0.0.1:{port}/%2F", outcomes, stack_timeout=0.3)
            await outcomes.wait(timeout=3.0)
            await asyncio.sleep(SETTLE)
            assert outcomes.names() == ["open_error"]
            error = outcomes.calls[0][1]
            assert isinstance(error, pika.exceptions.AMQPConnectionError)
            assert "timed out" in str(error)
            assert connection.is_closed
            assert len(accepted) == 1
            assert await asyncio.wait_for(accepted[0], 2), "the client left its socket open"
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_tls_connection_sends_protocol_header(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))

    async def scenario():
        headers: list[bytes] = []

        async def read_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            headers.append(await reader.readexactly(8))
            writer.close()  # so the client sees the stream end before Connection.Start

        server = await asyncio.start_server(read_header, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            outcomes = Outcomes()
            parameters = pika.URLParameters(f"amqps://guest:guest@127.0.0.1:{port}/%2F")
            parameters.ssl_options = pika.SSLOptions(client_context, server_hostname="localhost")
            parameters.socket_timeout, parameters.stack_timeout = 2.0, 5.0
            AsyncioAmqpConnection(
                parameters, on_open_callback=outcomes.opened, on_open_error_callback=outcomes.open_failed
            )
            await outcomes.wait()
            await asyncio.sleep(SETTLE)
            assert headers == [b"AMQP\x00\x00\x09\x01"]
            assert outcomes.names() == ["open_error"]
            # pika names a stream lost before Connection.Start a protocol mismatch.
            assert isinstance(outcomes.calls[0][1], pika.exceptions.IncompatibleProtocolError)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_close_during_handshake_reports_open_error_once():
    async def scenario():
        accepted: list[asyncio.Future] = []
        server = await silent_server(accepted)
        port = server.sockets[0].getsockname()[1]
        try:
            outcomes = Outcomes()
            connection = connect(f"amqp://guest:guest@127.0.0.1:{port}/%2F", outcomes)
            while not accepted:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the protocol header has gone out, and no reply will come

            connection.close()
            await outcomes.wait(timeout=2.0)
            await asyncio.sleep(SETTLE)
            assert outcomes.names() == ["open_error"]
            assert isinstance(outcomes.calls[0][1], pika.exceptions.ConnectionOpenAborted)
            assert await asyncio.wait_for(accepted[0], 2), "the client left its socket open"
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_close_before_connect_reports_open_error_once():
    async def scenario():
        outcomes = Outcomes()
        connection = connect(RABBITMQ_URL, outcomes)
        connection.close()  # the TCP connect has not started yet
        await outcomes.wait(timeout=2.0)
        await asyncio.sleep(SETTLE)
        assert outcomes.names() == ["open_error"]
        assert isinstance(outcomes.calls[0][1], pika.exceptions.ConnectionOpenAborted)
        assert connection.is_closed

    asyncio.run(scenario())


def test_cut_connection_reports_close_once():
    async def scenario():
        proxy = TcpProxy(("127.0.0.1", 5672))
        try:
            outcomes = Outcomes()
            connection = connect(proxied_url(proxy), outcomes)
            await outcomes.wait()
            assert outcomes.names() == ["open"]

            await asyncio.to_thread(proxy.cut)  # the proxy closes both ends of every relayed connection
            await outcomes.wait()
            await asyncio.sleep(SETTLE)
            assert outcomes.names() == ["open", "close"]
            assert isinstance(outcomes.calls[1][1], pika.exceptions.StreamLostError)
            assert connection.is_closed
        finally:
            proxy.cut()

    asyncio.run(scenario())


def test_missed_heartbeats_close_connection_once():
    async def scenario():
        proxy = TcpProxy(("127.0.0.1", 5672))
        try:
            outcomes = Outcomes()
            connection = connect(proxied_url(proxy), outcomes, heartbeat=1)
            await outcomes.wait()
            assert outcomes.names() == ["open"]

            # pika checks every heartbeat + 5 s and gives up after one check with no bytes received.
            proxy.freeze()
            await outcomes.wait(timeout=15.0)
            await asyncio.sleep(SETTLE)
            assert outcomes.names() == ["open", "close"]
            assert isinstance(outcomes.calls[1][1], pika.exceptions.AMQPHeartbeatTimeout)
            assert connection.is_closed
        finally:
            proxy.thaw()
            proxy.cut()

    asyncio.run(scenario())


def test_failing_callback_closes_connection_once():
    async def scenario():
        outcomes = Outcomes()
        connection = connect(RABBITMQ_URL, outcomes)
        await outcomes.wait()
        channel = await open_channel(connection)
        queue = await declare_queue(channel)

        def on_message(channel, method, properties, body):
            raise RuntimeError("callback failed on purpose")

        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)  # expected failure
        channel.basic_consume(queue, on_message, auto_ack=True)
        channel.basic_publish("", queue, b"poison")
        await outcomes.wait()
        await asyncio.sleep(SETTLE)
        assert outcomes.names() == ["open", "close"]
        reason = outcomes.calls[1][1]
        assert isinstance(reason, pika.exceptions.StreamLostError)
        assert "callback failed on purpose" in str(reason)
        assert connection.is_closed

    asyncio.run(scenario())


def test_callback_from_other_thread_runs_on_loop():
    async def scenario():
        outcomes = Outcomes()
        connection = connect(RABBITMQ_URL, outcomes)
        await outcomes.wait()
        loop_thread = threading.get_ident()
        ran_on: asyncio.Future = asyncio.get_running_loop().create_future()

        def callback():
            ran_on.set_result(threading.get_ident())

        # pika's adapter contract lets only this method be called from another thread.
        await asyncio.to_thread(connection._adapter_add_callback_threadsafe, callback)
        assert await asyncio.wait_for(ran_on, 2) == loop_thread

        connection.close()
        await outcomes.wait()
        assert outcomes.names() == ["open", "close"]

    asyncio.run(scenario())
