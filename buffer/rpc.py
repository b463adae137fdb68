"""Request-reply over RabbitMQ for one router thread.

pika's BlockingConnection is not thread-safe, so every router thread owns one
`RpcClient`: one connection, one channel with publisher confirms, and one
consumer on the direct reply-to pseudo-queue `amq.rabbitmq.reply-to`. The
consumer is registered on the channel before the first publish, because the
broker rejects a reply_to of that pseudo-queue without it (406
PRECONDITION_FAILED).

A call publishes a persistent, mandatory message on a channel in confirm
mode, then pumps the connection until the reply with the call's correlation
id arrives, the broker returns or nacks the message, or the deadline passes.
The call does not wait for the broker's ack. The broker acks a persistent
message only once it is on disk or consumed and acked, which took 1.5-4 ms
on a busy development machine. The reply proves that the message was routed
and consumed, and it arrived in under 1 ms there. Confirms still turn a nack (for example a
queue at its length limit) into a prompt 503 instead of a 504.

A reply with any other correlation id belongs to a call that already timed
out, or is a second reply to a redelivered message. Such a reply is
discarded, so each call receives at most one reply. Connection failures reset
the client so the next call reconnects.
"""

from __future__ import annotations

import itertools
import logging
import os
import time

import pika
import pika.exceptions
import pika.spec

from buffer import metrics
from buffer.config import BufferConfig
from buffer.messages import (
    MessageError,
    RelayedRequest,
    RelayedResponse,
    decode_response,
    request_headers_table,
)
from buffer.topology import BROKER_ERRORS, close_quietly, declare_topology

log = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"
IDLE_CHECK_AFTER = 1.0  # seconds idle after which a connection is checked before publishing


class BrokerUnavailable(Exception):
    """The request could not be handed to the broker; `reason` is a fixed metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class ReplyTimeout(Exception):
    """The request was published but no reply arrived before the deadline."""


class RpcClient:
    """One thread's connection, channel and reply consumer."""

    def __init__(self, config: BufferConfig) -> None:
        self._config = config
        self._connection: pika.BlockingConnection | None = None
        self._channel = None
        self._awaited: str | None = None
        self._reply: RelayedResponse | None = None
        # Correlation ids are a random per-client prefix plus a counter: unique
        # across routers (consumers remember them to spot redeliveries) and
        # cheaper than a uuid4 per request, which reads the OS random source.
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count(1)
        self._awaited_tag = 0
        self._published = 0  # delivery tag of the last publish on this channel
        self._refusal: str | None = None  # why the broker returned or nacked the awaited message
        self._last_used = 0.0

    def call(self, request: RelayedRequest, *, routing_key: str, deadline: float) -> RelayedResponse:
        """Publish `request` and return its reply; raise BrokerUnavailable or ReplyTimeout."""
        correlation_id = f"{self._id_prefix}-{next(self._id_counter)}"
        self._publish(request, routing_key=routing_key, correlation_id=correlation_id, deadline=deadline)
        return self._wait_for_reply(correlation_id, deadline=deadline)

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        close_quietly(connection)

    def _publish(
        self, request: RelayedRequest, *, routing_key: str, correlation_id: str, deadline: float
    ) -> None:
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            reply_to=REPLY_TO,
            correlation_id=correlation_id,
            headers=request_headers_table(request),
        )
        # A connection idle longer than the heartbeat window may have been closed
        # by the broker without this thread noticing. One retry on a fresh
        # connection separates a stale connection from a broker that is really gone.
        for attempt in (1, 2):
            reused = self._connection is not None
            try:
                self._ensure_connection(deadline)
                self._awaited, self._reply, self._refusal = correlation_id, None, None
                # Set before publishing, because a late nack of an earlier message can
                # be processed while basic_publish flushes and must not match this one.
                self._awaited_tag = self._published + 1
                self._channel.basic_publish(
                    self._config.exchange, routing_key, request.body, properties, mandatory=True
                )
                self._published += 1
                self._last_used = time.monotonic()
                return
            except pika.exceptions.AMQPError as error:
                self.close()
                if attempt == 2 or not reused:
                    raise BrokerUnavailable("connection_lost", repr(error)) from None
                log.info("event=broker_reconnect reason=stale_connection error=%r", error)

    def _wait_for_reply(self, correlation_id: str, *, deadline: float) -> RelayedResponse:
        try:
            while self._reply is None:
                if self._refusal is not None:
                    reason, self._refusal = self._refusal, None
                    raise BrokerUnavailable(reason, f"the broker did not accept {correlation_id}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReplyTimeout(f"no reply for correlation id {correlation_id}")
                self._connection.process_data_events(time_limit=remaining)
        except pika.exceptions.AMQPError as error:
            self.close()
            raise BrokerUnavailable("connection_lost", repr(error)) from None
        finally:
            self._awaited = None
        return self._reply

    def _on_confirm(self, frame) -> None:
        # Runs inside pika's I/O loop. Acks need no action, because the reply
        # is what the call waits for. A nack of the awaited message fails the call.
        method = frame.method
        covers_awaited = method.delivery_tag == self._awaited_tag or (
            method.multiple and method.delivery_tag >= self._awaited_tag
        )
        if isinstance(method, pika.spec.Basic.Nack) and covers_awaited and self._awaited:
            self._refusal = "nacked"
            # A zero-delay timer makes process_data_events return, so the wait loop checks the nack.
            self._connection.call_later(0, lambda: None)

    def _on_return(self, channel, method, properties, body) -> None:
        if properties.correlation_id == self._awaited:
            self._refusal = "unroutable"
        log.warning(
            "event=message_returned schedule=%s routing_key=%s reply=%s",
            self._config.schedule_key,
            method.routing_key,
            method.reply_text,
        )

    def _on_reply(self, channel, method, properties, body) -> None:
        # A second reply for the awaited id (two consumers replied to a redelivered
        # copy) can arrive in the same batch as the first. The first one wins.
        if (
            properties.correlation_id != self._awaited
            or self._awaited is None
            or self._reply is not None
        ):
            metrics.ROUTER_STALE_REPLIES.inc()
            log.debug("event=stale_reply correlation_id=%s", properties.correlation_id)
            return
        try:
            self._reply = decode_response(properties, body)
        except MessageError as error:
            log.error("event=invalid_reply correlation_id=%s error=%s", properties.correlation_id, error)
            self._reply = RelayedResponse(status=502, headers=(), body=b"invalid reply from consumer")

    def _ensure_connection(self, deadline: float) -> None:
        if self._connection is not None and self._connection.is_open:
            if time.monotonic() - self._last_used > IDLE_CHECK_AFTER:
                # Reads any close or EOF the broker sent while this thread was
                # idle, so a dead connection fails here, before the publish.
                self._connection.process_data_events(time_limit=0)
            return
        self.close()
        budget = max(0.5, deadline - time.monotonic())
        parameters = pika.URLParameters(self._config.rabbitmq_url)
        parameters.heartbeat = self._config.heartbeat
        parameters.connection_attempts = 1
        parameters.socket_timeout = min(budget, 5.0)
        parameters.stack_timeout = min(budget, 10.0)
        parameters.blocked_connection_timeout = max(1.0, self._config.request_timeout)
        try:
            self._connection = pika.BlockingConnection(parameters)
            channel = self._connection.channel()
            declare_topology(channel, self._config)
            channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)
            channel.add_on_return_callback(self._on_return)
            self._enable_confirms(channel, deadline)
        except BROKER_ERRORS as error:
            self.close()
            raise BrokerUnavailable("connect", repr(error)) from None
        self._channel = channel
        self._published = 0
        self._last_used = time.monotonic()
        log.info("event=broker_connected schedule=%s", self._config.schedule_key)

    def _enable_confirms(self, channel, deadline: float) -> None:
        # NOTE: pika 1.4.4's BlockingChannel only offers confirms that block each
        # publish until the broker's ack, so confirm mode is switched on through
        # the underlying asynchronous channel, which reports acks and nacks to
        # `_on_confirm` without blocking.
        selected = []

        def on_select_ok(frame) -> None:
            selected.append(frame)
            self._connection.call_later(0, lambda: None)  # ends the wait below at once

        channel._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_select_ok)
        while not selected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise pika.exceptions.AMQPConnectionError(
                    "confirm mode was not enabled before the deadline"
                )
            self._connection.process_data_events(time_limit=remaining)
