"""The local stack's objects on the shared RabbitMQ broker: who consumes them, and their removal.

The router and the consumer declare their exchanges and queues themselves,
named after the schedule (`<namespace>.<name>`, see `buffer.config`). Before
a stack starts, devstack inspects them so that two stacks do not consume the
same flavour queues. When it stops a stack whose namespace it picked for that
run, it deletes them, so per-run namespaces do not pile up on the broker.
"""

from __future__ import annotations

import logging

import pika
import pika.exceptions

from buffer.config import BufferConfig
from devstack.components import buffer_env
from devstack.settings import StackSettings

log = logging.getLogger("devstack")

NOT_FOUND = 404  # AMQP reply code of a passive declare on a missing queue or exchange
PRECONDITION_FAILED = 406  # AMQP reply code of an if-unused delete on an object in use


def buffer_config(settings: StackSettings) -> BufferConfig:
    """Return the configuration the stack's router and consumer read, which names their broker objects."""
    return BufferConfig.from_env(buffer_env(settings))


def connect(settings: StackSettings) -> pika.BlockingConnection:
    parameters = pika.URLParameters(settings.rabbitmq_url)
    parameters.socket_timeout = 5
    parameters.connection_attempts = 1
    return pika.BlockingConnection(parameters)


def consumed_flavour_queues(settings: StackSettings) -> dict[str, int]:
    """Return each flavour queue of the stack's schedule that already has consumers, with their count.

    A passive declare only inspects a queue. A queue that does not exist yet
    is fine, because the stack's consumer declares it. The broker closes the
    channel on that 404, so every queue gets its own channel.
    """
    config = buffer_config(settings)
    consumed = {}
    connection = connect(settings)
    try:
        for flavour in config.flavours:
            queue = config.queue_for(flavour)
            channel = connection.channel()
            try:
                frame = channel.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == NOT_FOUND:
                    continue
                raise
            if frame.method.consumer_count > 0:
                consumed[queue] = frame.method.consumer_count
            channel.close()
    finally:
        connection.close()
    return consumed


def delete_broker_objects(settings: StackSettings) -> list[str]:
    """Delete the stack's unused queues, then its unused exchanges, and return the names deleted.

    A queue that still has a consumer, or an exchange that still has a
    binding, belongs to something still running and is kept. Messages left
    in a deleted queue are lost, which is why only a per-run namespace's
    objects are deleted.
    """
    config = buffer_config(settings)
    queues = [config.queue_for(flavour) for flavour in config.flavours] + [config.dead_letter_queue]
    exchanges = [config.exchange, config.dead_letter_exchange]
    deleted = []
    connection = connect(settings)
    try:
        for queue in queues:
            if _delete_if_unused(connection, queue, kind="queue"):
                deleted.append(queue)
        for exchange in exchanges:
            if _delete_if_unused(connection, exchange, kind="exchange"):
                deleted.append(exchange)
    finally:
        connection.close()
    return deleted


def _delete_if_unused(connection: pika.BlockingConnection, name: str, *, kind: str) -> bool:
    """Delete one queue or exchange if it exists and is unused, and return True when it was deleted."""
    channel = connection.channel()
    try:
        if kind == "queue":
            channel.queue_declare(name, passive=True)
            channel.queue_delete(name, if_unused=True)
        else:
            channel.exchange_declare(name, passive=True)
            channel.exchange_delete(name, if_unused=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == PRECONDITION_FAILED:
            log.info("event=broker-object-kept kind=%s name=%s reason=in-use", kind, name)
        elif exc.reply_code != NOT_FOUND:
            raise
        return False
    channel.close()
    return True
