"""Request-reply over RabbitMQ, shared by every request thread or greenlet of a router process.

Each router process has one connection with one channel in confirm mode and
one consumer on the direct reply-to pseudo-queue `amq.rabbitmq.reply-to`.
`RpcClient.call()` publishes the request and waits on a lock of its own until
the reply, a failure or the deadline. How it publishes depends on the worker:

- Threads (gunicorn's `gthread`): pika connections are not thread-safe, so an
  I/O thread owns a pika `SelectConnection`. Request threads never touch pika.
  They put the request on an outbox and wake the I/O thread with
  `add_callback_threadsafe`, the one thread-safe call pika offers.
- Greenlets (gunicorn's gevent workers): the connection is a
  `buffer.gevent_amqp.GeventAmqpConnection`. All greenlets share one OS thread
  and pika never yields inside a call, so each request greenlet publishes
  itself, and a writer greenlet sends what they published in one system call.

One connection per process, not one per thread, is what makes the router
cheap under load. Requests published close together leave in one socket
write. The broker handles one
connection's frames instead of one per thread. Heartbeats flow even while
the router is idle, so an idle connection does not go stale.

Each message is persistent and mandatory. Confirms turn a nack (for example a
queue at its length limit) and a return (no queue bound for the routing key)
into a prompt 503 instead of a 504. A call does not wait for the broker's
ack: the broker acks a persistent message only once it is on disk or
consumed, which took 1.5-4 ms on a busy development machine, while the reply
proves that the message was routed and consumed.

Confirms also bound the memory that a frozen broker (process stopped, socket
still open) makes the router hold. pika notices such a broker only when
heartbeats time out, and until then every publish adds its frames to the
connection's outgoing buffer. The client therefore counts the bytes of the
publishes on the current channel that the broker has not confirmed yet. A
publish that would take the count over `MAX_UNCONFIRMED_BYTES` is not made,
unless nothing else is unconfirmed. Its call fails at once with
`BrokerUnavailable` reason `backlog`, which the router turns into 503. The
count needs no lock. With threads, only the I/O thread publishes and receives
confirms. With greenlets, request greenlets publish and the reader greenlet
receives confirms, all in one OS thread. pika never yields inside a call, so
no other greenlet runs between the check and the publish.

A reply whose correlation id no call is waiting for belongs to a call that
already timed out, or is a second reply to a redelivered message. Such a
reply is discarded and counted, so each call receives at most one reply.
When the connection is lost, every call still waiting fails with 503, because
replies to the direct reply-to pseudo-queue of a closed channel never arrive.
While the broker cannot be reached, calls fail at once. While a connection
attempt is in progress, they wait for it up to their deadline.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import sys
import threading
import time

import pika
import pika.exceptions
import pika.spec

from buffer import metrics
from buffer.body_deadline import gevent_patched
from buffer.config import BufferConfig
from buffer.messages import (
    FORMAT_HEADER,
    MessageError,
    RelayedRequest,
    RelayedResponse,
    decode_response,
    request_headers_table,
)
from buffer.process_id import current_pid
from buffer.topology import connection_parameters, declarations

log = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"
RECONNECT_DELAY_MIN = 0.25  # seconds before the first reconnect attempt, doubled after each failure
RECONNECT_DELAY_MAX = 2.0
# Bytes counted per publish on top of the body and the `cr` header, an estimate
# of the frames and the other properties. pika 1.4 marshals those into at most
# 380 bytes when the namespace and service names have up to 63 characters each,
# plus 8 bytes per body frame of up to 128 KiB. So the estimate covers bodies up to 2 MiB.
MESSAGE_OVERHEAD_BYTES = 512

# States of the shared connection.
CONNECTING = "connecting"  # an attempt is in progress: calls wait for it
READY = "ready"  # the channel is open, confirms are on and the reply consumer is registered
DOWN = "down"  # the last attempt failed; the next one starts after a delay: calls fail at once
CLOSED = "closed"  # close() was called


class BrokerUnavailable(Exception):
    """The request could not be handed to the broker; `reason` is a fixed metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class ReplyTimeout(Exception):
    """The request was published but no reply arrived before the deadline."""


class _Call:
    """One request waiting for its reply. `done` is held until the I/O thread settles the call."""

    __slots__ = ("correlation_id", "request", "routing_key", "done", "reply", "failure")

    def __init__(self, correlation_id: str, request: RelayedRequest, routing_key: str) -> None:
        self.correlation_id = correlation_id
        self.request = request
        self.routing_key = routing_key
        self.done = threading.Lock()
        self.done.acquire()
        self.reply: RelayedResponse | None = None
        self.failure: tuple[str, str] | None = None  # (metric reason, detail)


class RpcClient:
    """The connection, channel and reply consumer of one router process."""

    def __init__(self, config: BufferConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._state_changed = threading.Condition(self._lock)
        self._state = CONNECTING
        self._last_error = "not connected yet"
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._calls: dict[str, _Call] = {}  # correlation id -> call that has not been settled
        self._outbox: collections.deque[_Call] = collections.deque()
        self._wake_pending = False
        self._stop = threading.Event()
        self._cooperative = False  # gevent patched this process: request greenlets publish themselves
        # Owned by the I/O thread:
        self._connection: pika.SelectConnection | None = None
        self._channel = None
        self._unconfirmed: dict[int, tuple[str, int]] = {}  # delivery tag -> (correlation id, bytes)
        self._unconfirmed_bytes = 0  # sum of the bytes in `_unconfirmed`
        self._max_unconfirmed_bytes = config.max_unconfirmed_bytes or sys.maxsize
        self._published = 0  # delivery tag of the last publish on the current channel
        self._ready_once = False  # whether the current connection became ready
        # Correlation ids are a random per-process prefix plus a counter: unique
        # across routers (consumers remember them to spot redeliveries) and
        # cheaper than a uuid4 per request, which reads the OS random source.
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count(1)

    # Request threads

    def call(self, request: RelayedRequest, *, routing_key: str, deadline: float) -> RelayedResponse:
        """Publish `request` and return its reply; raise BrokerUnavailable or ReplyTimeout."""
        self._start()
        call = _Call(f"{self._id_prefix}-{next(self._id_counter)}", request, routing_key)
        with self._lock:
            if self._state != READY:
                self._wait_until_settled(deadline)
            self._calls[call.correlation_id] = call
            self._outbox.append(call)
            wake = not self._wake_pending
            self._wake_pending = True
        if self._cooperative:
            self._flush_outbox()
        elif wake:
            self._wake_io_thread()

        if not call.done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            with self._lock:
                self._calls.pop(call.correlation_id, None)
            # A reply or failure the I/O thread set between the timeout and the pop still counts.
        if call.reply is not None:
            return call.reply
        if call.failure is not None:
            reason, detail = call.failure
            raise BrokerUnavailable(reason, detail)
        raise ReplyTimeout(f"no reply for correlation id {call.correlation_id}")

    def close(self) -> None:
        """Close the connection and stop the I/O thread; calls still waiting fail with 503."""
        with self._lock:
            self._set_state(CLOSED, "the router is shutting down")
            thread = self._thread
        self._stop.set()
        connection = self._connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(self._close_connection)
            except (AttributeError, RuntimeError, OSError, pika.exceptions.AMQPError):
                pass  # the I/O loop is already gone
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def state(self) -> str:
        return self._state

    def _start(self) -> None:
        # Started on first use, in the process that serves requests: a thread started
        # before gunicorn forks its workers would not exist in them.
        if self._thread is not None and self._pid == current_pid():
            return
        with self._lock:
            if self._thread is not None and self._pid == current_pid():
                return
            self._pid = current_pid()
            self._cooperative = gevent_patched()
            self._stop.clear()
            self._calls.clear()
            self._outbox.clear()
            self._wake_pending = False
            self._set_state(CONNECTING, "not connected yet")
            self._thread = threading.Thread(target=self._run, name="broker-io", daemon=True)
            self._thread.start()

    def _wait_until_settled(self, deadline: float) -> None:
        # Called with the lock held. Waits out a connection attempt in progress.
        while self._state == CONNECTING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable("connect", f"no connection to the broker yet: {self._last_error}")
            self._state_changed.wait(remaining)
        if self._state != READY:
            raise BrokerUnavailable("connect", self._last_error)

    def _wake_io_thread(self) -> None:
        connection = self._connection
        try:
            connection.ioloop.add_callback_threadsafe(self._flush_outbox)
        except (AttributeError, RuntimeError, OSError, pika.exceptions.AMQPError):
            # Between connections: the I/O thread fails the outbox when it finds it.
            pass

    def _set_state(self, state: str, error: str = "") -> None:
        # Called with the lock held.
        if self._state == CLOSED:
            return
        self._state = state
        if error:
            self._last_error = error
        self._state_changed.notify_all()

    # I/O thread

    def _run(self) -> None:
        delay = RECONNECT_DELAY_MIN
        while not self._stop.is_set():
            was_ready = self._serve_one_connection()
            self._fail_unsettled("connection_lost")
            if self._stop.is_set():
                break
            delay = RECONNECT_DELAY_MIN if was_ready else min(delay * 2, RECONNECT_DELAY_MAX)
            self._stop.wait(delay)
            with self._lock:
                self._set_state(CONNECTING)
        self._fail_unsettled("connection_lost")

    def _serve_one_connection(self) -> bool:
        """Open a connection and run its I/O loop until it closes; return whether it became ready."""
        self._ready_once = False
        parameters = connection_parameters(self._config)
        parameters.blocked_connection_timeout = max(1.0, self._config.request_timeout)
        if self._cooperative:
            from buffer.gevent_amqp import GeventAmqpConnection  # imports gevent, which only its workers need

            connection_class = GeventAmqpConnection
        else:
            connection_class = pika.SelectConnection
        try:
            self._connection = connection_class(
                parameters,
                on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_connection_open_error,
                on_close_callback=self._on_connection_closed,
            )
            self._connection.ioloop.start()
        except Exception as error:  # noqa: BLE001 - the thread must survive to reconnect
            log.exception("event=broker_io_error schedule=%s error=%r", self._config.schedule_key, error)
            with self._lock:
                self._set_state(DOWN, repr(error))
        finally:
            connection, self._connection, self._channel = self._connection, None, None
            if connection is not None:
                try:
                    connection.ioloop.close()
                except Exception:  # noqa: BLE001 - closing a broken loop must not end the thread
                    pass
        return self._ready_once

    def _on_connection_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_connection_open_error(self, connection, error) -> None:
        with self._lock:
            self._set_state(DOWN, repr(error))
        log.warning("event=broker_connect_failed schedule=%s error=%r", self._config.schedule_key, error)
        connection.ioloop.stop()

    def _on_connection_closed(self, connection, reason) -> None:
        with self._lock:
            self._set_state(DOWN, repr(reason))
        if not self._stop.is_set():
            log.warning(
                "event=broker_connection_lost schedule=%s error=%r", self._config.schedule_key, reason
            )
        connection.ioloop.stop()

    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        self._unconfirmed.clear()
        self._unconfirmed_bytes = 0
        self._published = 0
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        # pika sends the declarations one after another and calls the last callback
        # when all are done. The reply consumer must exist before the first publish,
        # because the broker rejects a reply_to of the pseudo-queue without it
        # (406 PRECONDITION_FAILED).
        for method, arguments in declarations(self._config):
            getattr(channel, method)(**arguments)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm)
        channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True, callback=self._on_ready)

    def _on_ready(self, frame) -> None:
        self._ready_once = True
        with self._lock:
            self._set_state(READY)
        log.info("event=broker_connected schedule=%s", self._config.schedule_key)
        self._flush_outbox()

    def _on_channel_closed(self, channel, reason) -> None:
        # A declaration the broker rejects (PRECONDITION_FAILED) closes the channel.
        # The connection goes with it, and the next attempt starts after a delay.
        if not self._stop.is_set():
            log.error("event=broker_channel_closed schedule=%s error=%r", self._config.schedule_key, reason)
        with self._lock:
            self._set_state(DOWN, repr(reason))
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()

    def _close_connection(self) -> None:
        connection = self._connection
        if connection is None:
            return
        if connection.is_open:
            connection.close()
        elif not connection.is_closing:
            connection.ioloop.stop()

    def _flush_outbox(self) -> None:
        with self._lock:
            self._wake_pending = False
            ready = self._state == READY
            calls = list(self._outbox)
            self._outbox.clear()
        if not calls:
            return
        if not ready or self._channel is None or not self._channel.is_open:
            self._settle_all(calls, ("connection_lost", "the broker connection closed before the publish"))
            return
        for call in calls:
            self._publish(call)

    def _publish(self, call: _Call) -> None:
        if call.correlation_id not in self._calls:
            return  # the call timed out while it was queued
        request = call.request
        headers = request_headers_table(request)
        size = len(request.body) + len(headers[FORMAT_HEADER]) + MESSAGE_OVERHEAD_BYTES
        backlog = self._unconfirmed_bytes + size
        if backlog > self._max_unconfirmed_bytes and self._unconfirmed_bytes:
            self._reject_over_backlog(call, size)
            return
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            reply_to=REPLY_TO,
            correlation_id=call.correlation_id,
            headers=headers,
        )
        self._channel.basic_publish(
            self._config.exchange, call.routing_key, request.body, properties, mandatory=True
        )
        self._published += 1
        self._unconfirmed[self._published] = (call.correlation_id, size)
        self._unconfirmed_bytes = backlog

    def _reject_over_backlog(self, call: _Call, size: int) -> None:
        # The router logs the failure, rate-limited, with this detail.
        detail = (
            f"{self._unconfirmed_bytes} bytes of earlier publishes are not confirmed by the broker yet, "
            f"and {size} more would exceed MAX_UNCONFIRMED_BYTES={self._max_unconfirmed_bytes}"
        )
        self._fail_call(call.correlation_id, ("backlog", detail))

    def _on_confirm(self, frame) -> None:
        # Every confirm frees the bytes of the publishes it covers. Acks need no
        # other action, because the reply is what the call waits for. A nack
        # fails the calls it covers at once.
        method = frame.method
        if method.multiple:
            # Tags enter `_unconfirmed` in increasing order, so the covered ones come first.
            last = method.delivery_tag
            tags = list(itertools.takewhile(lambda tag: tag <= last, self._unconfirmed))
        else:
            tags = [method.delivery_tag]
        nacked = isinstance(method, pika.spec.Basic.Nack)
        for tag in tags:
            entry = self._unconfirmed.pop(tag, None)
            if entry is None:
                continue
            correlation_id, size = entry
            self._unconfirmed_bytes -= size
            if nacked:
                self._fail_call(correlation_id, ("nacked", f"the broker did not accept {correlation_id}"))

    def _on_return(self, channel, method, properties, body) -> None:
        self._fail_call(
            properties.correlation_id,
            ("unroutable", f"no queue took {properties.correlation_id}: {method.reply_text}"),
        )
        log.warning(
            "event=message_returned schedule=%s routing_key=%s reply=%s",
            self._config.schedule_key,
            method.routing_key,
            method.reply_text,
        )

    def _on_reply(self, channel, method, properties, body) -> None:
        # The first reply for a correlation id settles the call. A second one (two
        # consumers replied to a redelivered copy) finds no call and is discarded.
        with self._lock:
            call = self._calls.pop(properties.correlation_id, None)
        if call is None:
            metrics.ROUTER_STALE_REPLIES.inc()
            log.debug("event=stale_reply correlation_id=%s", properties.correlation_id)
            return
        try:
            call.reply = decode_response(properties, body)
        except MessageError as error:
            log.error("event=invalid_reply correlation_id=%s error=%s", properties.correlation_id, error)
            call.reply = RelayedResponse(status=502, headers=(), body=b"invalid reply from consumer")
        call.done.release()

    def _fail_call(self, correlation_id: str | None, failure: tuple[str, str]) -> None:
        with self._lock:
            call = self._calls.pop(correlation_id, None) if correlation_id else None
        if call is not None:
            call.failure = failure
            call.done.release()

    def _fail_unsettled(self, reason: str) -> None:
        with self._lock:
            calls = list(self._calls.values())
            self._calls.clear()
            self._outbox.clear()
            self._wake_pending = False
            detail = self._last_error
        self._settle_all(calls, (reason, detail), popped=True)

    def _settle_all(self, calls: list[_Call], failure: tuple[str, str], *, popped: bool = False) -> None:
        for call in calls:
            if not popped:
                with self._lock:
                    if self._calls.pop(call.correlation_id, None) is None:
                        continue
            call.failure = failure
            call.done.release()
