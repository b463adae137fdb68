"""Removal of a local stack's queues and exchanges from the shared broker."""

import os
import uuid

import pika
import pika.exceptions
import pytest

from buffer.config import BufferConfig
from buffer.topology import declare_topology
from devstack.broker import delete_broker_objects
from devstack.components import buffer_env
from devstack.settings import DEFAULT_PORTS, StackSettings, free_ports

pytestmark = pytest.mark.rabbitmq

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def queue_exists(connection: pika.BlockingConnection, queue: str) -> bool:
    channel = connection.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    channel.close()
    return True


def stack_settings(tmp_path) -> StackSettings:
    namespace = f"devstack-test-{uuid.uuid4().hex[:8]}"
    ports = free_ports(list(DEFAULT_PORTS))
    return StackSettings(ports=ports, namespace=namespace, rabbitmq_url=RABBITMQ_URL, run_dir=tmp_path)


def test_delete_removes_stack_queues(tmp_path):
    settings = stack_settings(tmp_path)
    config = BufferConfig.from_env(buffer_env(settings))
    queues = [config.queue_for(flavour) for flavour in config.flavours] + [config.dead_letter_queue]
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        declare_topology(connection.channel(), config)
        for queue in queues:
            assert queue_exists(connection, queue)

        deleted = delete_broker_objects(settings)

        assert sorted(deleted) == sorted([*queues, config.exchange, config.dead_letter_exchange])
        for queue in queues:
            assert not queue_exists(connection, queue)
    finally:
        connection.close()


def test_delete_keeps_consumed_queue(tmp_path):
    settings = stack_settings(tmp_path)
    config = BufferConfig.from_env(buffer_env(settings))
    consumed = config.queue_for(config.most_precise)
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        declare_topology(channel, config)
        channel.basic_consume(consumed, on_message_callback=lambda *_args: None)

        deleted = delete_broker_objects(settings)

        assert consumed not in deleted
        assert queue_exists(connection, consumed)
    finally:
        connection.close()
        delete_broker_objects(settings)
