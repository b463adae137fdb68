"""Consumer behaviour: dead letters, duplicates, throttle, evaluator, feedback and reply format."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pika
import pytest
from prometheus_client import REGISTRY

from buffer.consumer import Consumer
from buffer.messages import RelayedRequest, decode_response, request_headers_table
from buffer.rpc import REPLY_TO
from tests.buffer.helpers import decision, make_config, wait_for

pytestmark = pytest.mark.rabbitmq


def open_channel(config):
    connection = pika.BlockingConnection(pika.URLParameters(config.rabbitmq_url))
    return connection, connection.channel()


def echo_request(flavour: str, *, forced: bool = False) -> RelayedRequest:
    return RelayedRequest(
        method="GET",
        path="/echo",
        query="",
        headers=(),
        body=b"",
        flavour=flavour,
        forced=forced,
        deadline_ms=int((time.time() + 30) * 1000),
    )


def collect_replies(channel) -> list:
    replies = []
    channel.basic_consume(REPLY_TO, lambda ch, m, p, b: replies.append((p, b)), auto_ack=True)
    return replies


def pump(connection, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.1)


def test_undecodable_message_goes_to_dead_letter_queue(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()
    config = stack.config
    connection, channel = open_channel(config)
    try:
        assert stack.consumer.ready.wait(timeout=5)
        queue = config.queue_for(config.flavours[0])
        channel.basic_publish(
            "", queue, b"not a request", pika.BasicProperties(headers={"cr-version": 99})
        )

        got = {}

        def dead_lettered():
            method, properties, body = channel.basic_get(config.dead_letter_queue, auto_ack=True)
            if method is not None:
                got.update(body=body, properties=properties)
            return bool(got)

        assert wait_for(dead_lettered, timeout=5)
        assert got["body"] == b"not a request"
        assert got["properties"].headers["x-death"][0]["reason"] == "rejected"
        assert got["properties"].headers["x-death"][0]["queue"] == queue
        assert channel.queue_declare(queue, passive=True).method.message_count == 0
    finally:
        connection.close()


def test_redelivered_copy_forwarded_once(make_stack, engine, flavour_loads):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()
    config = stack.config
    connection, channel = open_channel(config)
    try:
        replies = collect_replies(channel)
        request = RelayedRequest(
            method="GET",
            path="/slow",
            query="seconds=0.5",
            headers=(),
            body=b"",
            flavour="high",
            deadline_ms=int((time.time() + 30) * 1000),
        )
        properties = pika.BasicProperties(
            reply_to=REPLY_TO, correlation_id=uuid.uuid4().hex, headers=request_headers_table(request)
        )
        queue = config.queue_for(config.flavours[0])
        assert stack.consumer.ready.wait(timeout=5)
        for _ in range(2):  # the same message twice, as a redelivery would present it
            channel.basic_publish("", queue, b"", properties)

        pump(connection, seconds=1.5)

        assert len(replies) == 1
        assert replies[0][0].correlation_id == properties.correlation_id
        assert flavour_loads["high"].slow_hits == 1
        assert channel.queue_declare(queue, passive=True).method.message_count == 0
    finally:
        connection.close()


def test_throttle_caps_inflight_requests(make_stack, engine, flavour_loads):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0}, throttle=0.25)
    stack = make_stack(prefetch=8)  # cap = max(1, floor(8 * 0.25)) = 2
    wait_for(lambda: stack.consumer._cap == 2, timeout=5)

    def call(_):
        return stack.app.test_client().get("/slow?seconds=0.4").status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(call, range(6)))

    assert statuses == [200] * 6
    assert flavour_loads["high"].max_active == 2


def test_consumer_evaluator_redraws_unforced_requests(make_stack, engine):
    engine.decision = decision({"high": 0, "mid": 0, "low": 100}, evaluator="consumer")
    stack = make_stack()
    assert stack.consumer.ready.wait(timeout=5)
    assert wait_for(lambda: stack.consumer.schedule.current.evaluator == "consumer", timeout=5)
    connection, channel = open_channel(stack.config)
    try:
        replies = collect_replies(channel)
        high_queue = stack.config.queue_for(stack.config.flavours[0])
        for forced in (False, True):
            request = echo_request("high", forced=forced)
            properties = pika.BasicProperties(
                reply_to=REPLY_TO,
                correlation_id=f"forced-{forced}",
                headers=request_headers_table(request),
            )
            channel.basic_publish("", high_queue, b"", properties)
        assert wait_for(lambda: (pump(connection, seconds=0.1), len(replies) == 2)[1], timeout=5)
    finally:
        connection.close()

    served = {p.correlation_id: decode_response(p, body).flavour for p, body in replies}
    assert served["forced-False"] == "low"
    assert served["forced-True"] == "high"


def hand_built_request_table(version: int, *, deadline_ms: int) -> dict:
    """Return the header table of `GET /echo?probe=1` as a router of that format version writes it."""
    if version == 1:
        return {
            "cr-version": 1,
            "cr-method": "GET",
            "cr-path": "/echo",
            "cr-query": "probe=1",
            "cr-headers": json.dumps([["X-Probe", "v1"]]),
            "cr-flavour": "high",
            "cr-forced": 0,
            "cr-deadline": deadline_ms,
        }
    fields = {
        "version": 2,
        "method": "GET",
        "path": "/echo",
        "query": "probe=1",
        "headers": [["X-Probe", "v2"]],
        "flavour": "high",
        "forced": False,
        "deadline": deadline_ms,
    }
    return {"cr": json.dumps(fields)}


@pytest.mark.parametrize("version", [1, 2])
def test_reply_uses_request_format_version(make_stack, engine, version):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()
    assert stack.consumer.ready.wait(timeout=5)
    table = hand_built_request_table(version, deadline_ms=int((time.time() + 30) * 1000))
    connection, channel = open_channel(stack.config)
    try:
        replies = collect_replies(channel)
        properties = pika.BasicProperties(
            reply_to=REPLY_TO, correlation_id=f"format-{version}", headers=table
        )
        channel.basic_publish("", stack.config.queue_for(stack.config.flavours[0]), b"", properties)
        assert wait_for(lambda: (pump(connection, seconds=0.1), len(replies) == 1)[1], timeout=5)
    finally:
        connection.close()

    reply, body = replies[0]
    if version == 1:
        assert set(reply.headers) == {"cr-version", "cr-status", "cr-headers", "cr-flavour"}
        assert reply.headers["cr-version"] == 1
        assert reply.headers["cr-status"] == 200
    else:
        assert set(reply.headers) == {"cr"}
        fields = json.loads(reply.headers["cr"])
        assert fields["version"] == 2
        assert fields["status"] == 200
    response = decode_response(reply, body)
    assert response.flavour == "high"
    echoed = json.loads(response.body)
    assert echoed["path"] == "/echo"
    assert echoed["query"] == "probe=1"
    assert echoed["headers"]["x-probe"] == f"v{version}"


def test_feedback_reports_served_counts(make_stack, engine):
    engine.decision = decision({"high": 0, "mid": 100, "low": 0})
    stack = make_stack(feedback_interval=0.3)

    for _ in range(3):
        assert stack.client.get("/echo").status_code == 200
    stack.client.get("/status/500")  # a failed request is not served quality

    def reported():
        return sum(report["counts"].get("mid", 0) for report in engine.feedback)

    assert wait_for(lambda: reported() == 3, timeout=5)
    assert all(set(report["counts"]) <= {"mid"} for report in engine.feedback)


def test_feedback_kept_while_engine_fails(make_stack, engine):
    engine.decision = decision({"high": 0, "mid": 0, "low": 100})
    stack = make_stack(feedback_interval=0.2)
    wait_for(lambda: stack.consumer.schedule.current.source == "engine", timeout=5)
    engine.fail_feedback = True

    for _ in range(4):
        assert stack.client.get("/echo").status_code == 200
    time.sleep(0.6)  # several failed reports
    assert engine.feedback == []
    assert stack.consumer.feedback.pending == {"low": 4}

    engine.fail_feedback = False
    assert wait_for(lambda: engine.feedback, timeout=5)
    assert engine.feedback[0]["counts"] == {"low": 4}
    assert stack.consumer.feedback.pending == {}


def test_expired_request_is_acked_unforwarded(make_stack, engine, flavour_loads):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()
    assert stack.consumer.ready.wait(timeout=5)
    labels = {"flavour": "high", "outcome": "expired"}
    before = REGISTRY.get_sample_value("consumer_messages_total", labels) or 0
    request = RelayedRequest(
        method="GET",
        path="/slow",
        query="seconds=0.1",
        headers=(),
        body=b"",
        flavour="high",
        deadline_ms=int((time.time() - 1) * 1000),  # the router stopped waiting a second ago
    )
    connection, channel = open_channel(stack.config)
    try:
        properties = pika.BasicProperties(
            reply_to=REPLY_TO, correlation_id="expired-1", headers=request_headers_table(request)
        )
        replies = collect_replies(channel)
        channel.basic_publish("", stack.config.queue_for(stack.config.flavours[0]), b"", properties)

        assert wait_for(
            lambda: REGISTRY.get_sample_value("consumer_messages_total", labels) == before + 1, timeout=5
        )
        pump(connection, seconds=0.3)
        assert replies == []
        assert flavour_loads["high"].slow_hits == 0
    finally:
        connection.close()


def test_stop_from_other_thread_finishes_forward(make_stack, engine, flavour_loads):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()
    consumer, thread = stack.consumer, stack._thread
    assert consumer.ready.wait(timeout=5)
    request = RelayedRequest(
        method="GET",
        path="/slow",
        query="seconds=1",
        headers=(),
        body=b"",
        flavour="high",
        deadline_ms=int((time.time() + 30) * 1000),
    )
    properties = pika.BasicProperties(
        reply_to=REPLY_TO, correlation_id="stopped-mid-forward", headers=request_headers_table(request)
    )
    queue = stack.config.queue_for(stack.config.flavours[0])
    connection, channel = open_channel(stack.config)
    try:
        replies = collect_replies(channel)
        channel.basic_publish("", queue, b"", properties)
        assert wait_for(lambda: flavour_loads["high"].slow_hits == 1, timeout=5)

        consumer.stop()  # from the test's thread, while the flavour is still sleeping
        assert wait_for(lambda: (pump(connection, seconds=0.1), len(replies) == 1)[1], timeout=5)
        thread.join(timeout=10)

        assert not thread.is_alive()
        assert not consumer.ready.is_set()
        assert replies[0][0].correlation_id == "stopped-mid-forward"
        assert decode_response(*replies[0]).status == 200
        # Acked before the connection closed: an unacked message would be back in the queue.
        assert channel.queue_declare(queue, passive=True).method.message_count == 0
    finally:
        connection.close()
    stack.consumer = None  # already stopped


def test_stop_before_run_returns_at_once(flavour_urls):
    config = make_config(flavour_urls=flavour_urls)
    consumer = Consumer(config)
    consumer.stop()
    thread = threading.Thread(target=consumer.run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert time.monotonic() - started < 2.0
    assert not consumer.ready.is_set()
