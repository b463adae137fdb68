"""A pika connection driven by gevent's event loop, for router workers that gevent patched.

pika's own adapters suit a router under gevent poorly. `SelectConnection` needs
an I/O thread of its own: under gevent that is a greenlet polling through
gevent's emulation of `select.poll`, and every request wakes it through a
pipe. `GeventConnection` replaces the event-loop watcher of the socket each
time it starts or stops waiting for the socket to become writable, which
happens on every publish. Both cost more per request than pika's framing.

`GeventAmqpConnection` implements pika's adapter methods on gevent primitives.
pika keeps the AMQP protocol: framing, channels, confirms and heartbeats.

- A reader greenlet receives from the socket and hands the bytes to pika, so
  delivery and confirm callbacks run in that greenlet.
- pika's outgoing frames go to a buffer. A writer greenlet sends the buffer in
  one `sendall` when it next runs, so every frame written by the greenlets that
  ran in between leaves in one system call.
- Timers (heartbeats, the handshake limit) run their callbacks in fresh greenlets.

Every greenlet of a gevent worker runs in one OS thread, and pika's methods
never yield to the event loop, so request greenlets may publish on a channel
of this connection directly. Like pika's other adapters, it reports a lost
connection through `on_close_callback`, or `on_open_error_callback` while the
handshake is still in progress. `ioloop` offers the few event-loop calls
`buffer.rpc.RpcClient` makes on a `SelectConnection`.
"""

from __future__ import annotations

import logging
import socket

import gevent
import gevent.event
import gevent.socket
import pika.connection
import pika.exceptions

log = logging.getLogger(__name__)

RECEIVE_BYTES = 131072


class GeventLoop:
    """The part of a pika I/O loop that `RpcClient` uses: run until stopped, and schedule callbacks."""

    def __init__(self) -> None:
        self._stopped = gevent.event.Event()
        self._hub = gevent.get_hub()

    def start(self) -> None:
        """Block the calling greenlet until `stop()`."""
        self._stopped.wait()

    def stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        self._stopped.set()

    def add_callback_threadsafe(self, callback) -> None:
        """Run `callback` in a new greenlet of the loop's thread; callable from any thread."""
        self._hub.loop.run_callback_threadsafe(gevent.spawn, callback)


class GeventAmqpConnection(pika.connection.Connection):
    """A pika connection whose socket, timers and callbacks are gevent greenlets."""

    def __init__(
        self,
        parameters: pika.connection.Parameters,
        on_open_callback=None,
        on_open_error_callback=None,
        on_close_callback=None,
    ) -> None:
        self.ioloop = GeventLoop()
        self._hub = gevent.get_hub()
        self._sock: socket.socket | None = None
        self._outgoing: list[bytes] = []
        self._outgoing_ready = gevent.event.Event()
        self._reader: gevent.Greenlet | None = None
        self._writer: gevent.Greenlet | None = None
        self._closing_stream = False  # our side closes the socket: the error is already recorded
        self._stream_terminated = False
        super().__init__(parameters, on_open_callback, on_open_error_callback, on_close_callback)

    # pika's adapter methods

    def _adapter_call_later(self, delay: float, callback):
        timer = self._hub.loop.timer(max(0.0, delay))
        timer.start(gevent.spawn, callback)
        return timer

    def _adapter_remove_timeout(self, timeout_id) -> None:
        timeout_id.close()

    def _adapter_add_callback_threadsafe(self, callback) -> None:
        self.ioloop.add_callback_threadsafe(callback)

    def _adapter_connect_stream(self) -> None:
        self._reader = gevent.spawn(self._connect_and_receive)

    def _adapter_disconnect_stream(self) -> None:
        # pika calls this to close, after Connection.CloseOk or on a fatal
        # error. It has recorded the reason already, so the stream ends with None.
        self._closing_stream = True
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # the reader's recv fails at once and ends the stream
        elif self._reader is not None:
            self._reader.kill(block=False)  # still connecting
            gevent.spawn(self._end_stream, None)
        self._outgoing_ready.set()

    def _adapter_emit_data(self, data: bytes) -> None:
        self._outgoing.append(data)
        self._outgoing_ready.set()

    # Greenlets

    def _connect_and_receive(self) -> None:
        params = self.params
        try:
            sock = gevent.socket.create_connection((params.host, params.port), timeout=params.socket_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)
        except OSError as error:
            self._end_stream(
                pika.exceptions.AMQPConnectionError(f"connect to {params.host}:{params.port} failed: {error}")
            )
            return

        if self._closing_stream:
            sock.close()
            self._end_stream(None)
            return

        self._sock = sock
        self._writer = gevent.spawn(self._send_outgoing, sock)
        handshake_limit = self._adapter_call_later(params.stack_timeout or 10.0, self._on_handshake_timeout)
        self.add_on_open_callback(lambda _connection: handshake_limit.close())
        self._on_stream_connected()

        error: Exception | None = None
        try:
            while True:
                data = sock.recv(RECEIVE_BYTES)
                if not data:
                    error = pika.exceptions.StreamLostError("the broker closed the connection")
                    break
                self._on_data_available(data)
        except OSError as lost:
            error = pika.exceptions.StreamLostError(f"stream connection lost: {lost!r}")
        except Exception as failure:  # noqa: BLE001 - a failing callback must not leave the socket open
            log.exception("event=amqp_callback_failed error=%r", failure)
            error = pika.exceptions.StreamLostError(f"a connection callback failed: {failure!r}")

        handshake_limit.close()
        if self._closing_stream:
            error = None
        else:
            self._sock = None
            sock.close()
        self._end_stream(error)

    def _send_outgoing(self, sock: socket.socket) -> None:
        while True:
            self._outgoing_ready.wait()
            self._outgoing_ready.clear()
            if self._sock is not sock:
                return
            if not self._outgoing:
                continue
            data = memoryview(b"".join(self._outgoing))
            self._outgoing.clear()
            try:
                # A send loop, because gevent's sendall makes an extra system call per call.
                while data:
                    data = data[sock.send(data) :]
            except OSError as error:
                log.debug("event=amqp_send_failed error=%r", error)
                sock.close()  # the reader sees the failure and ends the stream
                return

    def _on_handshake_timeout(self) -> None:
        if not self.is_open and not self._stream_terminated:
            self._terminate_stream(
                pika.exceptions.AMQPConnectionError(
                    f"the AMQP handshake timed out after {self.params.stack_timeout or 10.0:g} s"
                )
            )

    def _end_stream(self, error: Exception | None) -> None:
        if self._stream_terminated:
            return
        self._stream_terminated = True
        self._outgoing.clear()
        self._outgoing_ready.set()
        self._on_stream_terminated(error)
