"""Request-reply over RabbitMQ for one router thread.

pika's BlockingConnection is not thread-safe, so every router thread owns one
`RpcClient`: one connection, one channel with publisher confirms, and one
consumer on the direct reply-to pseudo-queue `amq.rabbitmq.reply-to`. The
consumer is registered on the channel before the first publish, because the
broker rejects a reply_to of that pseudo-queue without it (406
PRECONDITION_FAILED).

A call publishes a persistent, mandatory message, waits for the broker's
confirm, then pumps the connection until the reply with the call's
correlation id arrives or the deadline passes. A reply with any other
correlation id belongs to a call that already timed out, or is the second
answer to a redelivered message, and is discarded: each call sees at most one
reply. Connection failures reset the client so the next call reconnects.
"""

from __future__ import annotations

import logging
import time
import uuid

import pika
import pika.exceptions

from buffer import metrics
from buffer.config import BufferConfig
from buffer.messages import (
    MessageError,
    RelayedRequest,
    RelayedResponse,
    decode_response,
    request_headers_table,
)
from buffer.topology import declare_topology

log = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"


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

    def call(self, request: RelayedRequest, *, routing_key: str, deadline: float) -> RelayedResponse:
        """Publish `request` and return its reply; raise BrokerUnavailable or ReplyTimeout."""
        correlation_id = uuid.uuid4().hex
        self._publish(request, routing_key=routing_key, correlation_id=correlation_id, deadline=deadline)
        return self._wait_for_reply(correlation_id, deadline=deadline)

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass

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
        # by the broker without this thread noticing; one retry on a fresh
        # connection tells a stale connection from a broker that is really gone.
        for attempt in (1, 2):
            reused = self._connection is not None
            self._ensure_connection(deadline)
            self._awaited, self._reply = correlation_id, None
            try:
                self._channel.basic_publish(
                    self._config.exchange, routing_key, request.body, properties, mandatory=True
                )
                return
            except pika.exceptions.UnroutableError:
                raise BrokerUnavailable(
                    "unroutable", f"no queue is bound for routing key {routing_key}"
                ) from None
            except pika.exceptions.NackError:
                raise BrokerUnavailable("nacked", "the broker refused the message") from None
            except pika.exceptions.AMQPError as error:
                self.close()
                if attempt == 2 or not reused:
                    raise BrokerUnavailable("connection_lost", repr(error)) from None
                log.info("event=broker_reconnect reason=stale_connection error=%r", error)

    def _wait_for_reply(self, correlation_id: str, *, deadline: float) -> RelayedResponse:
        try:
            while self._reply is None:
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

    def _on_reply(self, channel, method, properties, body) -> None:
        if properties.correlation_id != self._awaited or self._awaited is None:
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
            channel.confirm_delivery()
            declare_topology(channel, self._config)
            channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)
        except (pika.exceptions.AMQPError, OSError) as error:
            self.close()
            raise BrokerUnavailable("connect", repr(error)) from None
        self._channel = channel
        log.info("event=broker_connected schedule=%s", self._config.schedule_key)
