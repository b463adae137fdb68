"""Flavour choice, forcing, limits and timeouts of the router, through the real broker."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pika
import pytest
from prometheus_client import REGISTRY
from scipy.stats import chisquare

from buffer.schedule import ScheduleCache
from tests.buffer.helpers import FLAVOURS, decision, free_port, make_config, wait_for

pytestmark = pytest.mark.rabbitmq


def served_flavours(client, count: int) -> Counter:
    served = Counter()
    for i in range(count):
        reply = client.get(f"/echo?i={i}")
        assert reply.status_code == 200, reply.data
        served[reply.get_json()["flavour"]] += 1
    return served


def test_weights_respected_over_many_requests(make_stack, engine):
    engine.decision = decision({"high": 60, "mid": 30, "low": 10})
    stack = make_stack(seed=1234)

    served = served_flavours(stack.client, 400)

    assert sum(served.values()) == 400
    expected = [240, 120, 40]
    observed = [served["high"], served["mid"], served["low"]]
    # The seed makes the draw deterministic, and p > 0.01 means it is consistent with the weights.
    assert chisquare(observed, expected).pvalue > 0.01, observed


def test_zero_weight_flavour_gets_no_requests(make_stack, engine):
    engine.decision = decision({"high": 50, "mid": 0, "low": 50})
    stack = make_stack()

    served = served_flavours(stack.client, 60)

    assert served["mid"] == 0
    assert served["high"] > 0
    assert served["low"] > 0


@pytest.mark.parametrize("header", ["low", "25"])
def test_forced_flavour_by_name_or_precision(make_stack, engine, header):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()

    reply = stack.client.get("/echo", headers={"x-carbonrouter": header})

    assert reply.status_code == 200
    assert reply.get_json()["flavour"] == "low"
    assert reply.get_json()["headers"]["x-carbonrouter"] == "25"


def test_forced_header_ignored_when_forcing_disabled(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(forcing_enabled=False)

    reply = stack.client.get("/echo", headers={"x-carbonrouter": "nonsense"})

    assert reply.status_code == 200
    assert reply.get_json()["flavour"] == "high"


def test_unknown_forced_flavour_is_400(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(consumer=False)

    reply = stack.client.get("/echo", headers={"x-carbonrouter": "ultra"})

    assert reply.status_code == 400
    message = reply.get_json()["error"]
    assert "'ultra'" in message
    assert "high (100)" in message


def test_body_over_limit_is_413(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(max_body_bytes=1000)

    too_big = stack.client.post("/echo", data=b"x" * 1001)
    at_limit = stack.client.post("/echo", data=b"x" * 1000)

    assert too_big.status_code == 413
    assert "1001" in too_big.get_json()["error"]
    assert at_limit.status_code == 200


def test_no_consumer_gives_504_within_timeout(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(consumer=False, request_timeout=1.0, forward_timeout=0.5)

    started = time.monotonic()
    reply = stack.client.get("/echo")
    elapsed = time.monotonic() - started

    assert reply.status_code == 504
    assert 0.9 <= elapsed < 1.5


def test_slow_flavour_gives_consumer_504(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(request_timeout=2.0, forward_timeout=0.5, forward_attempts=1)

    started = time.monotonic()
    reply = stack.client.get("/slow?seconds=1.5")
    elapsed = time.monotonic() - started

    assert reply.status_code == 504
    assert "did not answer" in reply.get_json()["error"]
    assert elapsed < 1.5


def test_retriable_status_retried_then_relayed(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(forward_attempts=3, forward_backoff=0.05)
    before = REGISTRY.get_sample_value("consumer_forward_retries_total", {"flavour": "high"}) or 0

    reply = stack.client.get("/status/503")

    assert reply.status_code == 503
    after = REGISTRY.get_sample_value("consumer_forward_retries_total", {"flavour": "high"})
    assert after - before == 2


def test_never_scheduled_falls_back_to_most_precise(make_stack, engine, caplog):
    engine.decision = None  # the engine returns 404 for this schedule
    caplog.set_level(logging.WARNING, logger="buffer.schedule")
    stack = make_stack(flavours=tuple(reversed(FLAVOURS)))  # most precise last

    served = served_flavours(stack.client, 20)

    assert served == Counter({"high": 20})
    assert REGISTRY.get_sample_value("router_schedule_fallback") == 1.0
    messages = [record.getMessage() for record in caplog.records]
    fallback_lines = [m for m in messages if "event=schedule_fallback component=router" in m]
    assert len(fallback_lines) == 1
    assert "flavour=high" in fallback_lines[0]
    assert stack.config.schedule_key in fallback_lines[0]


def test_engine_outage_keeps_last_schedule(make_stack, engine):
    engine.decision = decision({"high": 0, "mid": 0, "low": 100})
    stack = make_stack()
    assert served_flavours(stack.client, 5) == Counter({"low": 5})
    schedule = stack.app.config["BUFFER_ROUTER"].schedule

    engine.decision = None  # from now on the engine fails every fetch
    assert schedule.refresh() is False

    assert served_flavours(stack.client, 10) == Counter({"low": 10})
    assert REGISTRY.get_sample_value("router_schedule_fallback") == 0.0


def test_request_metrics_use_fixed_labels(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()
    labels = {"flavour": "high", "method": "PATCH", "status_class": "4xx"}
    before = REGISTRY.get_sample_value("router_http_requests_total", labels) or 0

    reply = stack.client.patch("/status/404")

    assert reply.status_code == 404
    assert REGISTRY.get_sample_value("router_http_requests_total", labels) == before + 1
    assert (
        REGISTRY.get_sample_value(
            "router_ingress_http_requests_total", {"method": "PATCH", "status_class": "4xx"}
        )
        >= 1
    )


def test_unroutable_message_gives_503(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(consumer=False, request_timeout=3.0, forward_timeout=2.0)
    assert stack.client.get("/echo").status_code == 504  # connects and declares the topology
    low = stack.config.flavour_named("low")
    connection = pika.BlockingConnection(pika.URLParameters(stack.config.rabbitmq_url))
    connection.channel().queue_delete(stack.config.queue_for(low))
    connection.close()

    started = time.monotonic()
    reply = stack.client.get("/echo", headers={"x-carbonrouter": "low"})

    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "1"
    assert time.monotonic() - started < 1.0
    assert REGISTRY.get_sample_value("router_broker_errors_total", {"reason": "unroutable"}) >= 1


def test_unreachable_flavour_gives_502_after_retries(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    closed = f"http://127.0.0.1:{free_port()}"
    stack = make_stack(flavour_urls={"high": closed}, forward_attempts=3, forward_backoff=0.05)
    before = REGISTRY.get_sample_value("consumer_forward_retries_total", {"flavour": "high"}) or 0

    reply = stack.client.get("/echo")

    assert reply.status_code == 502
    assert "did not answer" in reply.get_json()["error"]
    after = REGISTRY.get_sample_value("consumer_forward_retries_total", {"flavour": "high"})
    assert after - before == 2


def test_unsupported_method_is_405_counted_as_other(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(consumer=False)
    labels = {"method": "other", "status_class": "4xx"}
    before = REGISTRY.get_sample_value("router_ingress_http_requests_total", labels) or 0

    reply = stack.client.open("/echo", method="PROPFIND")

    assert reply.status_code == 405
    assert "Method Not Allowed" in reply.get_json()["error"]
    assert "PATCH" in reply.headers["Allow"]
    assert REGISTRY.get_sample_value("router_ingress_http_requests_total", labels) == before + 1


def test_nacked_message_gives_503(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(consumer=False, request_timeout=3.0, forward_timeout=2.0)
    assert stack.client.get("/echo").status_code == 504  # connects and declares the topology
    low = stack.config.flavour_named("low")
    probe = f"{stack.config.namespace}.nack-probe"
    connection = pika.BlockingConnection(pika.URLParameters(stack.config.rabbitmq_url))
    channel = connection.channel()
    # A second queue on the same routing key that rejects every publish makes the broker nack it.
    channel.queue_declare(probe, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    channel.queue_bind(probe, stack.config.exchange, routing_key=stack.config.queue_for(low))
    try:
        started = time.monotonic()
        reply = stack.client.get("/echo", headers={"x-carbonrouter": "low"})
        elapsed = time.monotonic() - started
    finally:
        channel.queue_delete(probe)
        connection.close()

    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "1"
    assert elapsed < 1.0
    assert REGISTRY.get_sample_value("router_broker_errors_total", {"reason": "nacked"}) >= 1


def test_schedule_refresher_survives_malformed_decision(engine):
    engine.decision = [1, 2, 3]  # valid JSON, but not a decision object
    cache = ScheduleCache(make_config(engine_url=engine.url, schedule_retry=0.1))
    try:
        cache.start()
        retried = wait_for(lambda: engine.schedule_calls >= 3, timeout=5)
        source_while_malformed = cache.latest.source
        engine.decision = decision({"high": 0, "mid": 100, "low": 0})
        recovered = wait_for(lambda: cache.latest.source == "engine", timeout=5)
    finally:
        cache.stop()

    assert retried, "the refresher stopped after the malformed decision"
    assert source_while_malformed == "fallback"
    assert recovered
    assert cache.latest.weights == {"high": 0.0, "mid": 100.0, "low": 0.0}
