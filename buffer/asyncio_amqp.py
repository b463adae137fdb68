"""A pika connection driven by an asyncio event loop through an asyncio transport, for the consumer.

pika 1.4.4's `AsyncioConnection` drives its socket through pika's own
transport layer. Each write registers the socket for writability with
`loop.add_writer` and unregisters it once the buffer is sent, which costs two
`epoll_ctl` calls and one more loop pass per write. It sends each frame with a
`send` call of its own, and each read calls `recv` until it fails with EAGAIN.
The consumer pays for all of these on every message.

`AsyncioAmqpConnection` implements pika's adapter methods on asyncio's own
transports, and pika keeps the AMQP protocol: framing, channels, heartbeats.

- `loop.create_connection` opens the socket (TLS too, from
  `parameters.ssl_options`). asyncio's protocol callbacks hand received bytes
  to pika, so delivery callbacks run in the loop's thread.
- pika's outgoing frames go to a buffer. The first frame schedules a flush
  with `loop.call_soon`, so every frame written in one loop pass leaves in one
  `transport.write`.
- Timers (heartbeats, the open deadline) are `loop.call_later` handles.

Failures reach the caller as they do with pika's adapters. While the
connection is opening, `on_open_error_callback` receives them, and once it is
open, `on_close_callback` does. A connection that ends calls exactly one of
them, once. A failed TCP connect and a missed open deadline arrive as
`AMQPConnectionError`, a lost socket as `StreamLostError`.
`parameters.socket_timeout` bounds the TCP connect to all resolved addresses
together, where pika bounds each address. `parameters.stack_timeout` bounds
the time from the start of the TCP connect until the connection is open, as
in pika.

Only `_adapter_add_callback_threadsafe` may be called from another thread.
"""

from __future__ import annotations

import asyncio
import functools

import pika.connection
import pika.exceptions
import pika.tcp_socket_opts

RECEIVE_BYTES = 131072  # maximum bytes one read takes from the socket


class AsyncioAmqpConnection(pika.connection.Connection):
    """A pika connection whose socket is an asyncio transport and whose timers are loop handles."""

    def __init__(
        self,
        parameters: pika.connection.Parameters,
        on_open_callback=None,
        on_open_error_callback=None,
        on_close_callback=None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task | None = None
        self._stack_timer: asyncio.TimerHandle | None = None
        self._outgoing: list[bytes] = []
        self._closing_stream = False  # set when this side closes the stream, after pika recorded the reason
        self._stream_ended = False
        super().__init__(parameters, on_open_callback, on_open_error_callback, on_close_callback)

    @property
    def ioloop(self) -> asyncio.AbstractEventLoop:
        """The event loop that runs this connection, as `AsyncioConnection.ioloop` returns it."""
        return self._loop

    # pika's adapter methods

    def _adapter_call_later(self, delay: float, callback) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback)

    def _adapter_remove_timeout(self, timeout_id: asyncio.TimerHandle) -> None:
        timeout_id.cancel()

    def _adapter_add_callback_threadsafe(self, callback) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, but got {callback!r}")
        self._loop.call_soon_threadsafe(callback)

    def _adapter_connect_stream(self) -> None:
        stack_timeout = self.params.stack_timeout
        if stack_timeout is not None:
            self._stack_timer = self._loop.call_later(stack_timeout, self._on_stack_timeout)
            self.add_on_open_callback(lambda _connection: self._cancel_stack_timer())
        self._connecting = self._loop.create_task(self._open_transport())
        self._connecting.add_done_callback(self._on_transport_opened)

    def _adapter_disconnect_stream(self) -> None:
        # pika calls this after Connection.CloseOk, on a fatal error, or from
        # close() while the connection is still opening. It has recorded the
        # reason already, so the stream ends with None.
        transport = self._transport
        if transport is not None:
            self._flush()  # frames queued before the close, such as Connection.CloseOk, still leave
            self._closing_stream = True
            transport.abort()  # asyncio calls connection_lost in a later loop pass
        elif self._connecting is not None:
            self._closing_stream = True
            self._connecting.cancel()  # _on_transport_opened ends the stream
        else:
            self._closing_stream = True
            self._loop.call_soon(self._end_stream, None)

    def _adapter_emit_data(self, data: bytes) -> None:
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(data)

    # The stream

    async def _open_transport(self) -> asyncio.Transport:
        params = self.params
        ssl_context = server_hostname = None
        if params.ssl_options is not None:
            ssl_context = params.ssl_options.context
            server_hostname = params.ssl_options.server_hostname or params.host
        transport, _protocol = await asyncio.wait_for(
            self._loop.create_connection(
                functools.partial(_AmqpStreamProtocol, self),
                params.host,
                params.port,
                ssl=ssl_context,
                server_hostname=server_hostname,
            ),
            params.socket_timeout,
        )
        return transport

    def _on_transport_opened(self, task: asyncio.Task) -> None:
        self._connecting = None
        if task.cancelled():
            # _adapter_disconnect_stream cancels the task after pika recorded the reason.
            # Any other cancellation ends the attempt with an error of its own.
            cancelled = pika.exceptions.AMQPConnectionError("the connection attempt was cancelled")
            self._end_stream(None if self._closing_stream else cancelled)
            return
        error = task.exception()
        if error is not None:
            self._end_stream(self._connect_error(error))
            return

        # Python 3.11's wait_for returns the connection when it is cancelled just after the connect.
        transport = task.result()
        if self._closing_stream:
            transport.abort()
            self._end_stream(None)
            return

        # The stream is up: set the URL's TCP options, then start the AMQP handshake.
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            pika.tcp_socket_opts.set_sock_opts(self.params.tcp_options, sock)
        self._on_stream_connected()

    def _connect_error(self, error: BaseException) -> pika.exceptions.AMQPConnectionError:
        params = self.params
        detail = str(error)
        if isinstance(error, TimeoutError) and not detail:
            detail = f"timed out after {params.socket_timeout:g} s (socket_timeout)"
        return pika.exceptions.AMQPConnectionError(
            f"cannot connect to {params.host}:{params.port}: {detail or repr(error)}"
        )

    def _on_transport_lost(
        self, transport: asyncio.BaseTransport | None, error: Exception | None, *, got_eof: bool
    ) -> None:
        if transport is None or transport is not self._transport:
            return  # the attempt that opened this transport was given up and has ended already
        self._transport = None
        if self._closing_stream:
            reason = None
        elif error is not None:
            reason = pika.exceptions.StreamLostError(f"Stream connection lost: {error!r}")
        elif got_eof:
            reason = pika.exceptions.StreamLostError("Transport indicated EOF")
        else:
            reason = pika.exceptions.StreamLostError("the transport closed without an error")
        self._end_stream(reason)

    def _flush(self) -> None:
        if not self._outgoing:
            return
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if self._transport is not None and not self._closing_stream:
            self._transport.write(data)

    def _on_stack_timeout(self) -> None:
        self._stack_timer = None
        if self.is_open or self._closing_stream or self._stream_ended:
            return
        params = self.params
        self._terminate_stream(
            pika.exceptions.AMQPConnectionError(
                f"connecting to {params.host}:{params.port} timed out: the AMQP connection did not "
                f"open within {params.stack_timeout:g} s (stack_timeout)"
            )
        )

    def _cancel_stack_timer(self) -> None:
        if self._stack_timer is not None:
            self._stack_timer.cancel()
            self._stack_timer = None

    def _end_stream(self, error: Exception | None) -> None:
        """Report the end of the stream to pika once, which calls the open-error or close callback."""
        if self._stream_ended:
            return
        self._stream_ended = True
        self._cancel_stack_timer()
        self._outgoing.clear()
        self._on_stream_terminated(error)


class _AmqpStreamProtocol(asyncio.BufferedProtocol):
    """The asyncio protocol of one connection attempt, which hands received bytes and the loss to pika.

    It receives into one buffer of its own. A plain `asyncio.Protocol` gets a
    new bytes object of up to 256 KiB per read, which glibc allocates with
    `mmap` and frees with `munmap`: three more system calls per read.
    """

    def __init__(self, connection: AsyncioAmqpConnection) -> None:
        self._connection = connection
        self._transport: asyncio.BaseTransport | None = None
        self._got_eof = False
        self._buffer = memoryview(bytearray(RECEIVE_BYTES))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._connection._on_data_available(bytes(self._buffer[:nbytes]))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def eof_received(self) -> bool:
        self._got_eof = True
        return False  # asyncio closes the transport, then calls connection_lost(None)

    def connection_lost(self, error: Exception | None) -> None:
        self._connection._on_transport_lost(self._transport, error, got_eof=self._got_eof)
