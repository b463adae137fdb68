"""The circuit breaker: after the engine was unreachable, syncs skip it for a cooldown."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hooks.app import create_app
from hooks.breaker import EngineCircuitBreaker
from hooks.engine_client import EngineCallSkipped, EngineRejected, EngineUnavailable
from hooks.sync import sync
from tests.hooks.conftest import NOW, condition, load_request
from tests.hooks.fakes import FakeEngine


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SwitchableEngine(FakeEngine):
    """Fake engine whose failure can change between calls; each call first sleeps `delay` seconds."""

    def __init__(self, *, error: Exception | None = None, delay: float = 0.0):
        super().__init__(error=error)
        self.delay = delay
        self.lock = threading.Lock()

    def put_config(self, namespace: str, name: str, configuration: dict) -> dict:
        time.sleep(self.delay)
        with self.lock:
            return super().put_config(namespace, name, configuration)


def timed_out() -> EngineUnavailable:
    return EngineUnavailable(
        "PUT http://127.0.0.1:9/config/shop/checkout timed out after 3.0 s", unreachable=True
    )


CONFIGURATION = {
    "scheduler": {},
    "flavours": [{"name": "high", "precision": 100, "energy": 1.0}],
    "componentBounds": {"router": {"min": 1, "max": 5}, "consumer": {"min": 1, "max": 5},
                        "target": {"min": 1, "max": 10}},
}


def call(breaker: EngineCircuitBreaker) -> dict:
    return breaker.put_config("shop", "checkout", CONFIGURATION)


def test_breaker_skips_engine_during_cooldown():
    engine = SwitchableEngine(error=timed_out())
    clock = ManualClock()
    breaker = EngineCircuitBreaker(engine, cooldown_seconds=5, monotonic=clock)

    with pytest.raises(EngineUnavailable):
        call(breaker)
    clock.now += 4.9
    with pytest.raises(EngineCallSkipped, match="timed out after 3.0 s less than 5 s ago"):
        call(breaker)
    assert len(engine.calls) == 1


def test_breaker_probes_after_cooldown_and_closes():
    engine = SwitchableEngine(error=timed_out())
    clock = ManualClock()
    breaker = EngineCircuitBreaker(engine, cooldown_seconds=5, monotonic=clock)
    with pytest.raises(EngineUnavailable):
        call(breaker)

    engine.error = None
    clock.now += 5.0
    assert "flavourWeights" in call(breaker)
    assert "flavourWeights" in call(breaker)
    assert len(engine.calls) == 3


def test_failed_probe_reopens_breaker():
    engine = SwitchableEngine(error=timed_out())
    clock = ManualClock()
    breaker = EngineCircuitBreaker(engine, cooldown_seconds=5, monotonic=clock)
    with pytest.raises(EngineUnavailable):
        call(breaker)
    clock.now += 5.0
    with pytest.raises(EngineUnavailable) as probe:
        call(breaker)
    assert not isinstance(probe.value, EngineCallSkipped)

    clock.now += 1.0
    with pytest.raises(EngineCallSkipped):
        call(breaker)
    assert len(engine.calls) == 2


@pytest.mark.parametrize("error", [
    EngineUnavailable("PUT http://engine/config/shop/checkout: returned HTTP 500"),
    EngineRejected("PUT http://engine/config/shop/checkout: invalid configuration", []),
], ids=["http 500", "rejected"])
def test_answering_engine_keeps_breaker_closed(error):
    engine = SwitchableEngine(error=error)
    breaker = EngineCircuitBreaker(engine, cooldown_seconds=5, monotonic=ManualClock())
    for _ in range(3):
        with pytest.raises(type(error)) as raised:
            call(breaker)
        assert not isinstance(raised.value, EngineCallSkipped)
    assert len(engine.calls) == 3


def test_zero_cooldown_never_skips():
    engine = SwitchableEngine(error=timed_out())
    breaker = EngineCircuitBreaker(engine, cooldown_seconds=0, monotonic=ManualClock())
    for _ in range(3):
        with pytest.raises(EngineUnavailable) as raised:
            call(breaker)
        assert not isinstance(raised.value, EngineCallSkipped)
    assert len(engine.calls) == 3


def test_skipped_sync_renders_last_decision(config):
    request = load_request("sync-steady-state.json")
    engine = SwitchableEngine(error=timed_out())
    breaker = EngineCircuitBreaker(engine, cooldown_seconds=5, monotonic=ManualClock())
    sync(request, engine=breaker, config=config, now=NOW)

    skipped = sync(request, engine=breaker, config=config, now=NOW)
    reachable = sync(request, engine=FakeEngine(), config=config, now=NOW)
    assert len(engine.calls) == 1
    assert skipped["children"] == reachable["children"]
    engine_condition = condition(skipped, "EngineReachable")
    assert engine_condition["status"] == "False"
    assert engine_condition["reason"] == "EngineUnavailable"
    assert "engine not called" in engine_condition["message"]
    assert skipped["resyncAfterSeconds"] == config.retry_seconds


def test_burst_calls_engine_once_per_thread(config):
    # Four request threads, as gunicorn's gthread worker would run them.
    threads = 4
    engine = SwitchableEngine(error=timed_out(), delay=0.2)
    client = create_app(config, engine=engine, clock=lambda: NOW).test_client()
    request = load_request("sync-steady-state.json")

    with ThreadPoolExecutor(threads) as pool:
        responses = list(pool.map(lambda _: client.post("/sync", json=request), range(12)))

    assert [response.status_code for response in responses] == [200] * 12
    assert all(len(response.get_json()["children"]) == 12 for response in responses)
    assert len(engine.calls) <= threads
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'hooks_engine_call_failures_total{reason="EngineCallSkipped"}' in metrics
