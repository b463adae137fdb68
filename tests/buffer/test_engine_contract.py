"""The buffer against the real engine app: schedule fetch, manual weights and feedback."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
from prometheus_client import REGISTRY

from tests.buffer.helpers import LoopbackServer, unique_namespace, wait_for

engine_app = pytest.importorskip("engine.app")

pytestmark = pytest.mark.rabbitmq

CONFIG = {
    "scheduler": {"policy": "p100", "targetError": "0.1", "validFor": 60, "evaluator": "router"},
    "flavours": [
        {"name": "high", "precision": 100, "energy": 1.0, "enabled": True},
        {"name": "mid", "precision": 50, "energy": 0.6, "enabled": True},
        {"name": "low", "precision": 25, "energy": 0.3, "enabled": True},
    ],
}


@pytest.fixture
def real_engine():
    server = LoopbackServer(engine_app.create_app())
    yield server.url
    server.close()


def test_router_follows_real_engine_manual_weights(make_stack, real_engine):
    namespace, name = unique_namespace(), "svc"
    base = real_engine
    put = requests.put(f"{base}/config/{namespace}/{name}", json=CONFIG, timeout=10)
    assert put.status_code == 200, put.text
    manual = requests.post(
        f"{base}/schedule/{namespace}/{name}/manual",
        json={"flavourWeights": {"high": 0, "mid": 100, "low": 0}, "ttlSeconds": 600},
        timeout=10,
    )
    assert manual.status_code == 200, manual.text

    posted_before = REGISTRY.get_sample_value("consumer_feedback_posts_total", {"outcome": "ok"}) or 0
    failed_before = (
        REGISTRY.get_sample_value("consumer_feedback_posts_total", {"outcome": "failed"}) or 0
    )
    stack = make_stack(namespace=namespace, engine_url=real_engine, feedback_interval=0.3)
    served = Counter(stack.client.get("/echo").get_json()["flavour"] for _ in range(10))

    assert served == Counter({"mid": 10})
    router_schedule = stack.app.config["BUFFER_ROUTER"].schedule.current
    assert router_schedule.source == "engine"

    def posted() -> float:
        return REGISTRY.get_sample_value("consumer_feedback_posts_total", {"outcome": "ok"}) or 0

    assert wait_for(
        lambda: posted() > posted_before and stack.consumer.feedback.pending == {}, timeout=5
    )
    failed = REGISTRY.get_sample_value("consumer_feedback_posts_total", {"outcome": "failed"}) or 0
    assert failed == failed_before
