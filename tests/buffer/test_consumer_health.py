"""The consumer's health endpoint and bind address, run as a real process."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.buffer.helpers import RABBITMQ_URL, delete_test_topology, free_port, make_config, wait_for
from tests.buffer.tcp_proxy import TcpProxy
from tests.buffer.test_outages import spawn_consumer

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def consumer_process(tmp_path, flavour_urls):
    """Start a consumer process with a given RabbitMQ URL; stop it after the test."""
    processes = []

    def start(rabbitmq_url: str, *, port: int, bind: str = "127.0.0.1"):
        config = make_config(rabbitmq_url=rabbitmq_url, flavour_urls=flavour_urls)
        process = spawn_consumer(
            config,
            tmp_path / "consumer.log",
            CONSUMER_METRICS_PORT=str(port),
            CONSUMER_METRICS_BIND=bind,
        )
        processes.append((process, config))
        return process

    yield start
    for process, config in processes:
        process.terminate()
        process.wait(timeout=20)
        delete_test_topology(config)


def health(port: int) -> requests.Response | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except requests.ConnectionError:
        return None


def broker_gauge(port: int) -> str:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    lines = [line for line in text.splitlines() if line.startswith("consumer_broker_connected ")]
    return lines[0].split()[1] if lines else "missing"


def test_health_reflects_broker_connection(consumer_process):
    proxy = TcpProxy(("127.0.0.1", 5672))
    proxy.freeze()
    port = free_port()
    try:
        consumer_process(RABBITMQ_URL.replace("127.0.0.1:5672", proxy.address), port=port)
        assert wait_for(lambda: health(port) is not None, timeout=10), "health server never started"

        down = health(port)
        assert down.status_code == 503
        assert down.json() == {"status": "unavailable", "broker": "disconnected"}
        assert broker_gauge(port) == "0.0"

        proxy.thaw()
        assert wait_for(lambda: health(port).status_code == 200, timeout=25)
        assert health(port).json() == {"status": "ok", "broker": "connected"}
        assert broker_gauge(port) == "1.0"
    finally:
        proxy.thaw()
        proxy.cut()


def test_metrics_bind_address_limits_listener(consumer_process):
    port = free_port()
    consumer_process(RABBITMQ_URL, port=port, bind="127.0.0.1")
    assert wait_for(lambda: health(port) is not None, timeout=10)

    # 127.0.0.2 is another loopback address: a listener on 0.0.0.0 would accept it.
    with socket.socket() as probe:
        probe.settimeout(2)
        assert probe.connect_ex(("127.0.0.2", port)) != 0
