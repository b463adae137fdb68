"""Exchanges and queues of one buffered service, declared the same way by both sides.

Each flavour has a durable queue `<ns>.<svc>.queue.precision-<p>` bound to the
direct exchange `<ns>.<svc>` with the queue's own name as routing key. Every
flavour queue dead-letters into the fanout exchange `<ns>.<svc>.dlx`, whose
queue `<ns>.<svc>.queue.dead-letter` keeps rejected messages for inspection.
The router and the consumer both declare everything on connect, so whichever
starts first creates the topology and the other's declarations are no-ops.
A queue declared earlier with other arguments makes the broker close the
channel with PRECONDITION_FAILED; delete that queue or give the service a new
SERVICE_NAME.

`BROKER_ERRORS` lists the exceptions that mean "the broker cannot be reached
or stopped answering", for both sides to catch.
"""

from __future__ import annotations

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from buffer.config import BufferConfig, FlavourSpec

# pika 1.4.4's BlockingConnection turns only socket-connect failures into
# AMQPConnectionError. A handshake that times out (AMQPConnectorStackTimeout),
# an aborted connector and the other connector errors derive from
# AMQPConnectorException, which is not an AMQPError.
BROKER_ERRORS = (pika.exceptions.AMQPError, AMQPConnectorException, OSError)


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    """Close `connection` if it is open; a broker that is already gone is not an error here."""
    if connection is None or not connection.is_open:
        return
    try:
        connection.close()
    except BROKER_ERRORS:
        pass


def connection_parameters(config: BufferConfig) -> pika.URLParameters:
    """Return the parameters both sides connect with: one attempt, bounded by socket and handshake timeouts.

    The caller retries with its own backoff, so pika makes a single attempt.
    """
    parameters = pika.URLParameters(config.rabbitmq_url)
    parameters.heartbeat = config.heartbeat
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5.0
    parameters.stack_timeout = 10.0
    return parameters


def declarations(config: BufferConfig) -> list[tuple[str, dict]]:
    """Return the channel calls that declare the topology, in order, as (method name, keyword arguments).

    Blocking and asynchronous pika channels take the same calls, so both sides
    declare from this one list.
    """
    steps: list[tuple[str, dict]] = [
        ("exchange_declare", {"exchange": config.exchange, "exchange_type": "direct", "durable": True})
    ]
    arguments = {}
    if config.dead_letter_enabled:
        steps += [
            (
                "exchange_declare",
                {"exchange": config.dead_letter_exchange, "exchange_type": "fanout", "durable": True},
            ),
            ("queue_declare", {"queue": config.dead_letter_queue, "durable": True}),
            ("queue_bind", {"queue": config.dead_letter_queue, "exchange": config.dead_letter_exchange}),
        ]
        arguments["x-dead-letter-exchange"] = config.dead_letter_exchange
    for flavour in config.flavours:
        queue = config.queue_for(flavour)
        steps += [
            ("queue_declare", {"queue": queue, "durable": True, "arguments": arguments}),
            (
                "queue_bind",
                {"queue": queue, "exchange": config.exchange, "routing_key": routing_key(config, flavour)},
            ),
        ]
    return steps


def declare_topology(channel: BlockingChannel, config: BufferConfig) -> None:
    """Declare the exchange, the flavour queues and the dead-letter path."""
    for method, arguments in declarations(config):
        getattr(channel, method)(**arguments)


def routing_key(config: BufferConfig, flavour: FlavourSpec) -> str:
    return config.queue_for(flavour)


def delete_topology(channel: BlockingChannel, config: BufferConfig) -> None:
    """Delete everything `declare_topology` creates (tests and teardown only)."""
    for flavour in config.flavours:
        channel.queue_delete(config.queue_for(flavour))
    channel.queue_delete(config.dead_letter_queue)
    channel.exchange_delete(config.exchange)
    channel.exchange_delete(config.dead_letter_exchange)
