"""A broker that accepts TCP connections but never responds, behind a frozen loopback proxy."""

from __future__ import annotations

import time

import pytest

from tests.buffer.conftest import start_consumer
from tests.buffer.helpers import RABBITMQ_URL, decision, delete_test_topology, make_config
from tests.buffer.tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def frozen_proxy():
    proxy = TcpProxy(("127.0.0.1", 5672))
    proxy.freeze()
    yield proxy
    proxy.thaw()
    proxy.cut()


def proxied_url(proxy: TcpProxy) -> str:
    return RABBITMQ_URL.replace("127.0.0.1:5672", proxy.address)


def test_black_holed_broker_gives_router_503(make_stack, engine, frozen_proxy):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(
        consumer=False, rabbitmq_url=proxied_url(frozen_proxy), request_timeout=2.0, forward_timeout=1.5
    )
    started = time.monotonic()
    response = stack.client.get("/anything")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(stack.config.retry_after)
    assert "broker" in response.get_json()["error"]
    assert elapsed < stack.config.request_timeout + 1.0


def test_black_holed_broker_keeps_consumer_retrying(flavour_urls, frozen_proxy):
    config = make_config(rabbitmq_url=proxied_url(frozen_proxy), flavour_urls=flavour_urls)
    consumer, thread = start_consumer(config)
    try:
        # The consumer's connection attempt gives up after its 10 s stack timeout.
        time.sleep(12.0)
        assert thread.is_alive(), "the consumer's run loop ended on a connection timeout"
        assert not consumer.ready.is_set()

        frozen_proxy.thaw()
        assert consumer.ready.wait(timeout=20), "the consumer did not connect after the broker answered"
    finally:
        consumer.stop()
        thread.join(timeout=15)
        delete_test_topology(config)


def test_stop_ends_connect_to_black_holed_broker(flavour_urls, frozen_proxy):
    config = make_config(rabbitmq_url=proxied_url(frozen_proxy), flavour_urls=flavour_urls)
    consumer, thread = start_consumer(config)
    time.sleep(1.0)  # the connection attempt now waits for a handshake that never comes

    started = time.monotonic()
    consumer.stop()
    thread.join(timeout=15)

    assert not thread.is_alive()
    # Well before the 10 s stack timeout that would end the attempt on its own.
    assert time.monotonic() - started < 3.0
    assert not consumer.ready.is_set()
