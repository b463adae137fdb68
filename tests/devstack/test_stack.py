"""The run command's checks before anything starts, and its exit status when they fail."""

import os
import socket
import subprocess
import sys
import uuid

import pika
import pytest

from devstack.settings import DEFAULT_PORTS, StackSettings, free_ports
from devstack.stack import PreflightError, preflight

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def listening_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def closed_port() -> int:
    return free_ports(["x"])["x"]


def test_preflight_names_busy_port_and_missing_broker(listening_port):
    ports = free_ports(list(DEFAULT_PORTS))
    ports["router"] = listening_port
    settings = StackSettings(ports=ports, rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2F")
    with pytest.raises(PreflightError) as info:
        preflight(settings)
    message = str(info.value)
    assert f"port {listening_port} (router) is already in use" in message
    assert "--free-ports" in message
    assert "no RabbitMQ answers at 127.0.0.1:" in message
    assert "make rabbitmq" in message


@pytest.fixture
def consumed_queue():
    """A uniquely named flavour queue of the `high` flavour with one consumer attached."""
    namespace = f"devstack-test-{uuid.uuid4().hex[:8]}"
    queue = f"{namespace}.carbonstat.queue.precision-100"
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        channel.queue_declare(queue)
        channel.basic_consume(queue, on_message_callback=lambda *_args: None)
        yield namespace, queue
        channel.queue_delete(queue)
    finally:
        connection.close()


@pytest.mark.rabbitmq
def test_preflight_rejects_queue_with_consumer(consumed_queue):
    namespace, queue = consumed_queue
    settings = StackSettings(
        ports=free_ports(list(DEFAULT_PORTS)), namespace=namespace, rabbitmq_url=RABBITMQ_URL
    )
    with pytest.raises(PreflightError) as info:
        preflight(settings)
    message = str(info.value)
    assert f"flavour queues already have consumers: {queue} (1 consumer)" in message
    assert "--namespace" in message


@pytest.mark.rabbitmq
def test_run_with_consumed_queue_exits_2(consumed_queue, tmp_path):
    namespace, queue = consumed_queue
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "run",
            "--free-ports",
            "--namespace",
            namespace,
            "--run-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RABBITMQ_URL": RABBITMQ_URL},
    )
    assert result.returncode == 2
    assert f"flavour queues already have consumers: {queue} (1 consumer)" in result.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.rabbitmq
def test_preflight_accepts_missing_queues():
    namespace = f"devstack-test-{uuid.uuid4().hex[:8]}"
    settings = StackSettings(
        ports=free_ports(list(DEFAULT_PORTS)), namespace=namespace, rabbitmq_url=RABBITMQ_URL
    )
    preflight(settings)


def test_run_exits_2_before_starting_anything(listening_port, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "run",
            "--engine-port",
            str(listening_port),
            "--run-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"port {listening_port} (engine) is already in use" in result.stderr
    assert not (tmp_path / "logs").exists()


def test_run_rejects_invalid_speed_up(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "run", "--speed-up", "-1", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--speed-up must be > 0, got -1.0" in result.stderr


def test_status_without_stack_prints_start_hint(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "status", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no running stack found" in result.stderr
    assert "make run" in result.stderr


def test_missing_entry_point_is_named(monkeypatch):
    from devstack import components

    monkeypatch.setitem(components.ENTRY_POINTS, "router", "buffer.no_such_router")
    monkeypatch.setitem(components.ENTRY_POINTS, "hooks", "no_such_package.app")
    assert components.missing_entry_points() == [
        "hooks: module no_such_package.app not found",
        "router: module buffer.no_such_router not found",
    ]


def test_every_entry_point_exists():
    from devstack.components import missing_entry_points

    assert missing_entry_points() == []
