"""Requests of every method travel router -> RabbitMQ -> consumer -> flavour and back."""

from __future__ import annotations

import base64
import gzip

import pytest

from tests.buffer.helpers import decision

pytestmark = pytest.mark.rabbitmq


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_round_trip_relays_method_body_and_query(make_stack, engine, method):
    engine.decision = decision({"high": 0, "mid": 100, "low": 0})
    stack = make_stack()
    body = b"\x00binary\xffpayload-" + method.encode()

    reply = stack.client.open(
        "/api/v1/items/42?q=a%20b&n=1&n=2",
        method=method,
        data=body,
        headers={"X-Custom": "kept", "Connection": "keep-alive, X-Hop", "X-Hop": "dropped"},
    )

    assert reply.status_code == 200
    echoed = reply.get_json()
    assert echoed["flavour"] == "mid"
    assert echoed["method"] == method
    assert echoed["path"] == "/api/v1/items/42"
    assert echoed["query"] == "q=a%20b&n=1&n=2"
    assert base64.b64decode(echoed["body"]) == body
    assert echoed["headers"]["x-custom"] == "kept"
    assert "x-hop" not in echoed["headers"]
    assert echoed["headers"]["x-carbonrouter"] == "50"
    assert reply.headers["X-Flavour"] == "mid"
    assert reply.headers["Set-Cookie"] == "a=1"


def test_round_trip_head_returns_headers_without_body(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()

    reply = stack.client.head("/anything?x=1")

    assert reply.status_code == 200
    assert reply.headers["X-Flavour"] == "high"
    assert reply.data == b""


def test_round_trip_relays_error_status_unchanged(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()

    reply = stack.client.get("/status/418")

    assert reply.status_code == 418
    assert reply.data == b"status 418"


def test_round_trip_keeps_request_content_encoding(make_stack, engine):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack()
    compressed = gzip.compress(b'{"numbers": [1, 2, 3]}')

    reply = stack.client.post(
        "/avg", data=compressed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )

    # The router relays the body as it arrived, still compressed, so the
    # flavour needs the header to decode it.
    assert reply.status_code == 200
    echoed = reply.get_json()
    assert base64.b64decode(echoed["body"]) == compressed
    assert echoed["headers"]["content-encoding"] == "gzip"
