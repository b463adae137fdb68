"""Fixtures of the buffer tests: flavours, a fake engine, a consumer thread, the router app."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from buffer.config import BufferConfig
from buffer.consumer import Consumer
from buffer.router import create_app
from tests.buffer.helpers import (
    FLAVOURS,
    FakeEngine,
    FlavourLoad,
    LoopbackServer,
    delete_test_topology,
    flavour_app,
    make_config,
)


@pytest.fixture(scope="module")
def flavour_servers():
    servers = {f.name: LoopbackServer(flavour_app(f.name, FlavourLoad())) for f in FLAVOURS}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture
def flavour_urls(flavour_servers):
    return {name: server.url for name, server in flavour_servers.items()}


@pytest.fixture
def flavour_loads(flavour_servers):
    """Per-flavour load counters, reset for this test."""
    loads = {}
    for name, server in flavour_servers.items():
        load = server.app.config["LOAD"]
        load.slow_hits = load.active = load.max_active = 0
        loads[name] = load
    return loads


@pytest.fixture
def engine():
    fake = FakeEngine()
    server = LoopbackServer(fake.app())
    fake.url = server.url
    yield fake
    server.close()


@dataclass
class Stack:
    config: BufferConfig
    consumer: Consumer | None
    client: object
    app: object

    def stop_consumer(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
            self._thread.join(timeout=15)
            self.consumer = None


def start_consumer(config: BufferConfig) -> tuple[Consumer, threading.Thread]:
    consumer = Consumer(config)
    thread = threading.Thread(target=consumer.run, name="test-consumer", daemon=True)
    thread.start()
    return consumer, thread


@pytest.fixture
def make_stack(flavour_urls, engine):
    """Build a router app and, unless `consumer=False`, a consumer thread on a fresh topology."""
    stacks = []

    def build(*, consumer: bool = True, **overrides) -> Stack:
        overrides.setdefault("engine_url", engine.url)
        overrides.setdefault("flavour_urls", flavour_urls)
        config = make_config(**overrides)
        app = create_app(config)
        stack = Stack(config=config, consumer=None, client=app.test_client(), app=app)
        if consumer:
            stack.consumer, stack._thread = start_consumer(config)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.stop_consumer()
        stack.app.config["BUFFER_ROUTER"].close()
        delete_test_topology(stack.config)
