"""Pure parts of the buffer: configuration, decisions, message format, reply matching."""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pika
import pytest
from prometheus_client import REGISTRY

from buffer.config import BufferConfig, ConfigError, parse_flavour_urls, parse_flavours
from buffer.messages import (
    MessageError,
    RelayedRequest,
    RelayedResponse,
    decode_request,
    decode_response,
    end_to_end_headers,
    request_headers_table,
    response_headers_table,
)
from buffer.router import LogLimiter
from buffer.rpc import RpcClient, _Call
from buffer.schedule import ScheduleCache, fallback_schedule, parse_decision
from tests.buffer.helpers import FLAVOURS, decision, make_config

BASE_ENV = {"FLAVOURS": "high:100,mid:50,low:25"}


def test_config_from_env_defaults():
    config = BufferConfig.from_env(BASE_ENV)

    assert config.rabbitmq_url == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert config.request_timeout == 30.0
    assert config.forward_timeout == 25.0
    assert config.exchange == "default.carbonstat"
    assert config.queue_for(config.flavours[1]) == "default.carbonstat.queue.precision-50"
    assert config.most_precise.name == "high"
    assert config.consumer_metrics_bind == "0.0.0.0"
    assert config.max_unconfirmed_bytes == 64 * 1024 * 1024


def test_config_from_env_reads_every_override():
    env = dict(
        BASE_ENV,
        SCHEDULE_NAMESPACE="shop",
        SERVICE_NAME="api",
        REQUEST_TIMEOUT="8",
        FORWARD_TIMEOUT="6",
        MAX_BODY_BYTES="512",
        MAX_UNCONFIRMED_BYTES="4096",
        FORCING_ENABLED="false",
        CONSUMER_PREFETCH="4",
        FLAVOUR_URLS="high=http://127.0.0.1:1/,low=http://127.0.0.1:3",
        TARGET_URL="http://svc:80",
        CONSUMER_METRICS_BIND="127.0.0.1",
    )
    config = BufferConfig.from_env(env)

    assert config.exchange == "shop.api"
    assert config.forward_timeout == 6.0
    assert config.max_body_bytes == 512
    assert config.max_unconfirmed_bytes == 4096
    assert config.forcing_enabled is False
    assert config.prefetch == 4
    assert config.flavour_urls == {"high": "http://127.0.0.1:1", "low": "http://127.0.0.1:3"}
    assert config.target_url == "http://svc:80"
    assert config.consumer_metrics_bind == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"FLAVOURS": ""}, "FLAVOURS is empty"),
        ({"FLAVOURS": "high"}, "write name:precision"),
        ({"FLAVOURS": "high:abc"}, "non-integer precision"),
        ({"FLAVOURS": "high:101"}, "outside 0-100"),
        ({"FLAVOURS": "high:100,high:50"}, "duplicate name"),
        ({"FLAVOURS": "high:100,low:100"}, "duplicate precision"),
        (dict(BASE_ENV, FLAVOUR_URLS="ultra=http://x"), "unknown flavours ['ultra']"),
        (dict(BASE_ENV, FLAVOUR_URLS="high=ftp://x"), "write name=http://host:port"),
        (dict(BASE_ENV, REQUEST_TIMEOUT="ten"), "REQUEST_TIMEOUT='ten' is not a number"),
        (
            dict(BASE_ENV, REQUEST_TIMEOUT="5", FORWARD_TIMEOUT="5"),
            "must be shorter than REQUEST_TIMEOUT",
        ),
        (dict(BASE_ENV, FORCING_ENABLED="maybe"), "is not a boolean"),
        (dict(BASE_ENV, CONSUMER_PREFETCH="0"), "at least 1"),
        (dict(BASE_ENV, CONSUMER_PREFETCH="70000"), "CONSUMER_PREFETCH=70000"),
        (dict(BASE_ENV, REQUEST_TIMEOUT="nan"), "REQUEST_TIMEOUT='nan' is not a finite number"),
        (dict(BASE_ENV, FORWARD_TIMEOUT="inf"), "FORWARD_TIMEOUT='inf' is not a finite number"),
        (dict(BASE_ENV, ROUTER_SEED="abc"), "ROUTER_SEED='abc' is not an integer"),
        (dict(BASE_ENV, RABBITMQ_HEARTBEAT="-1"), "RABBITMQ_HEARTBEAT=-1"),
        (dict(BASE_ENV, MAX_BODY_BYTES="-5"), "MAX_BODY_BYTES=-5"),
        (
            dict(BASE_ENV, MAX_UNCONFIRMED_BYTES="1000"),
            "MAX_UNCONFIRMED_BYTES=1000 is invalid: set it to at least MAX_BODY_BYTES=1048576",
        ),
        (dict(BASE_ENV, MAX_UNCONFIRMED_BYTES="-1"), "MAX_UNCONFIRMED_BYTES=-1"),
        (dict(BASE_ENV, RETRY_AFTER_SECONDS="-3"), "RETRY_AFTER_SECONDS=-3"),
        (dict(BASE_ENV, CONSUMER_METRICS_PORT="99999"), "CONSUMER_METRICS_PORT=99999"),
        (dict(BASE_ENV, FEEDBACK_INTERVAL_SECONDS="0"), "FEEDBACK_INTERVAL_SECONDS=0"),
        (dict(BASE_ENV, SCHEDULE_RETRY_SECONDS="0"), "SCHEDULE_RETRY_SECONDS=0"),
        (dict(BASE_ENV, SCHEDULE_MAX_AGE_SECONDS="-1"), "SCHEDULE_MAX_AGE_SECONDS=-1"),
        (dict(BASE_ENV, FORWARD_BACKOFF_SECONDS="-1"), "FORWARD_BACKOFF_SECONDS=-1"),
        (dict(BASE_ENV, RABBITMQ_URL="not a url"), "RABBITMQ_URL='not a url'"),
        (dict(BASE_ENV, ENGINE_URL="ftp://engine"), "ENGINE_URL='ftp://engine'"),
    ],
)
def test_config_rejects_invalid_value(env, fragment):
    with pytest.raises(ConfigError) as raised:
        BufferConfig.from_env(env)

    assert fragment in str(raised.value)


def test_config_accepts_zero_unconfirmed_limit():
    assert BufferConfig.from_env(dict(BASE_ENV, MAX_UNCONFIRMED_BYTES="0")).max_unconfirmed_bytes == 0


def test_parse_helpers_strip_whitespace():
    assert [f.name for f in parse_flavours(" high:100 , low:25 ")] == ["high", "low"]
    assert parse_flavour_urls(" high = http://a:1/ ") == {"high": "http://a:1"}


def test_decision_ignores_unknown_flavours():
    raw = decision({"high": 50, "low": 50})
    raw["flavourWeights"]["ultra"] = 80

    schedule = parse_decision(raw, flavours=FLAVOURS, key="ns/name")

    assert schedule.weights == {"high": 50.0, "low": 50.0}
    assert schedule.source == "engine"


def test_decision_without_positive_weight_is_rejected():
    with pytest.raises(ValueError, match="no positive weight"):
        parse_decision(decision({"high": 0, "mid": 0}), flavours=FLAVOURS, key="ns/name")


def test_decision_clamps_throttle_and_unknown_evaluator():
    raw = decision({"high": 100}, throttle=1.7, evaluator="sidecar")

    schedule = parse_decision(raw, flavours=FLAVOURS, key="ns/name")

    assert schedule.throttle == 1.0
    assert schedule.evaluator == "router"
    assert schedule.valid_until == pytest.approx(time.time() + 60, abs=2)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([1, 2, 3], "JSON object"),
        ("busy", "JSON object"),
        ({"flavourWeights": {"high": 1}, "processing": [0.5]}, "processing"),
        ({"flavourWeights": {"high": "many"}}, "weight"),
        ({"flavourWeights": {"high": 1, "low": float("inf")}}, "weight"),
        ({"flavourWeights": {"high": float("nan")}}, "weight"),
        ({"flavourWeights": {"high": 1}, "processing": {"throttle": float("nan")}}, "throttle"),
        ({"flavourWeights": {"high": 1}, "processing": {"throttle": "low"}}, "throttle"),
    ],
)
def test_decision_malformed_raises_value_error(raw, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_decision(raw, flavours=FLAVOURS, key="ns/name")


def test_schedule_draw_follows_weights():
    schedule = parse_decision(decision({"high": 70, "mid": 0, "low": 30}), flavours=FLAVOURS, key="k")
    rng = random.Random(3)

    draws = Counter(schedule.draw(rng) for _ in range(10_000))

    assert draws["mid"] == 0
    assert 6800 < draws["high"] < 7200
    assert draws["high"] + draws["low"] == 10_000


def test_fallback_schedule_picks_most_precise():
    config = make_config(flavours=tuple(reversed(FLAVOURS)))

    schedule = fallback_schedule(config)

    assert schedule.weights == {"high": 100.0}
    assert schedule.source == "fallback"


def test_schedule_cache_without_engine_stays_on_fallback():
    states = []
    cache = ScheduleCache(make_config(engine_url=""), on_fallback=states.append)

    assert cache.refresh() is False
    assert cache.current.source == "fallback"
    assert states == [True]


def test_request_message_round_trip():
    request = RelayedRequest(
        method="POST",
        path="/a%2Fb",
        query="x=1&x=2",
        headers=(("X-A", "1"), ("X-A", "2")),
        body=b"\x00\x01",
        flavour="low",
        forced=True,
        deadline_ms=123,
    )
    properties = pika.BasicProperties(headers=request_headers_table(request))

    assert decode_request(properties, request.body) == request


def test_response_message_round_trip():
    response = RelayedResponse(201, (("Location", "/x"),), b"ok", "mid")
    properties = pika.BasicProperties(headers=response_headers_table(response))

    assert decode_response(properties, b"ok") == response


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        (None, "cr-version is None"),
        ({"cr-version": 1, "cr-method": "GET"}, "cr-path"),
        ({"cr-version": 1, "cr-method": "GET", "cr-path": "/", "cr-query": ""}, "cr-headers"),
        (
            {"cr-version": 1, "cr-method": "GET", "cr-path": "/", "cr-query": "", "cr-headers": "{bad"},
            "not valid JSON",
        ),
        (
            {
                "cr-version": 1,
                "cr-method": "GET",
                "cr-path": "/",
                "cr-query": "",
                "cr-headers": "[[1, 2]]",
            },
            "string pairs",
        ),
        *[
            (
                {
                    "cr-version": 1,
                    "cr-method": "GET",
                    "cr-path": "/",
                    "cr-query": "",
                    "cr-headers": "[]",
                    "cr-flavour": "high",
                    "cr-deadline": deadline,
                },
                "cr-deadline",
            )
            for deadline in ("abc", [1], float("nan"), float("inf"))
        ],
    ],
)
def test_decode_request_names_the_bad_field(headers, fragment):
    with pytest.raises(MessageError) as raised:
        decode_request(pika.BasicProperties(headers=headers), b"")

    assert fragment in str(raised.value)


def test_decode_response_rejects_bad_status():
    with pytest.raises(MessageError, match="cr-status"):
        decode_response(pika.BasicProperties(headers={"cr-status": 700}), b"")


def test_hop_by_hop_headers_are_dropped():
    pairs = [
        ("Connection", "close, X-Private"),
        ("X-Private", "secret"),
        ("Transfer-Encoding", "chunked"),
        ("Host", "example"),
        ("Content-Length", "3"),
        ("X-Kept", "yes"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]

    assert end_to_end_headers(pairs) == (("X-Kept", "yes"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))


def test_reply_with_other_correlation_id_is_discarded():
    client = RpcClient(make_config())
    call = _Call("wanted", RelayedRequest("GET", "/", "", (), b"", "high"), "rk")
    client._calls["wanted"] = call
    before = REGISTRY.get_sample_value("router_stale_replies_total") or 0
    headers = response_headers_table(RelayedResponse(200, (), b""))

    client._on_reply(None, None, pika.BasicProperties(correlation_id="old", headers=headers), b"late")

    assert call.reply is None
    assert not call.done.acquire(blocking=False)
    assert REGISTRY.get_sample_value("router_stale_replies_total") == before + 1

    client._on_reply(None, None, pika.BasicProperties(correlation_id="wanted", headers=headers), b"mine")

    assert call.reply.body == b"mine"
    assert call.done.acquire(blocking=False)

    # A second reply to the same id (two consumers replied to a redelivered copy) is discarded too.
    client._on_reply(None, None, pika.BasicProperties(correlation_id="wanted", headers=headers), b"again")

    assert call.reply.body == b"mine"
    assert REGISTRY.get_sample_value("router_stale_replies_total") == before + 2


def test_log_limiter_counts_suppressed_lines(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("buffer.router.time.monotonic", lambda: clock[0])
    limiter = LogLimiter(interval=1.0)

    assert limiter.admit("a") == 0
    assert limiter.admit("a") is None
    assert limiter.admit("a") is None
    assert limiter.admit("b") == 0
    clock[0] += 1.0
    assert limiter.admit("a") == 2


def test_current_pid_follows_fork():
    from buffer.process_id import current_pid

    assert current_pid() == os.getpid()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes both ids and exits without running pytest's teardown
        os.write(write_end, f"{current_pid()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write_end)
    reported = os.read(read_end, 100).decode().split()
    os.close(read_end)
    os.waitpid(child, 0)
    assert reported[0] == reported[1]
    assert int(reported[0]) == child


def test_labelled_returns_the_labels_child():
    from buffer import metrics

    child = metrics.labelled(metrics.ROUTER_LATENCY, "high")
    assert child is metrics.ROUTER_LATENCY.labels(flavour="high")
    assert metrics.labelled(metrics.ROUTER_LATENCY, "high") is child
    before = REGISTRY.get_sample_value("router_request_duration_seconds_count", {"flavour": "high"}) or 0
    child.observe(0.01)
    after = REGISTRY.get_sample_value("router_request_duration_seconds_count", {"flavour": "high"})
    assert after == before + 1
