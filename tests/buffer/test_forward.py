"""The forwarder on its own: flavour URLs with a path prefix and invalid flavour URLs."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest
from flask import Flask, Response

from buffer.forward import Forwarder
from buffer.messages import RelayedRequest
from tests.buffer.helpers import FLAVOURS, LoopbackServer, flavour_app, make_config


@pytest.fixture
def flavour_server():
    server = LoopbackServer(flavour_app("high"))
    yield server
    server.close()


def relayed(path: str, query: str = "") -> RelayedRequest:
    return RelayedRequest(
        method="POST",
        path=path,
        query=query,
        headers=(("Content-Type", "application/json"),),
        body=b'{"numbers": [1, 2]}',
        flavour="high",
        deadline_ms=int((time.time() + 5) * 1000),
    )


def forward_all(config, requests: list[RelayedRequest]) -> list:
    """Forward `requests` one after another through one Forwarder on a fresh event loop."""

    async def run():
        forwarder = Forwarder(config)
        try:
            return [await forwarder.forward(request, FLAVOURS[0]) for request in requests]
        finally:
            await forwarder.close()

    return asyncio.run(run())


def test_flavour_url_path_prefix_is_kept(flavour_server):
    config = make_config(flavour_urls={"high": flavour_server.url + "/v1"})

    # The second call reuses the session and connection opened by the first.
    for response in forward_all(config, [relayed("/avg", "x=1")] * 2):
        echoed = json.loads(response.body)
        assert response.status == 200
        assert echoed["path"] == "/v1/avg"
        assert echoed["query"] == "x=1"
        assert echoed["headers"]["x-carbonrouter"] == "100"


def test_flavour_url_without_http_scheme_gives_502():
    config = make_config(flavour_urls={"high": "ftp://127.0.0.1:21"})
    (response,) = forward_all(config, [relayed("/avg")])

    assert response.status == 502
    assert "ftp://127.0.0.1:21" in json.loads(response.body)["error"]


def test_forward_sends_only_client_headers(flavour_server):
    config = make_config(flavour_urls={"high": flavour_server.url})
    request = RelayedRequest(
        method="GET",
        path="/echo",
        query="",
        headers=(("X-Tag", "a"), ("X-Tag", "b")),
        body=b"",
        flavour="high",
        deadline_ms=int((time.time() + 5) * 1000),
    )

    (response,) = forward_all(config, [request])
    echoed = json.loads(response.body)["headers"]

    assert response.status == 200
    assert echoed["x-tag"].replace(" ", "") == "a,b"  # both values of the repeated header
    assert "accept-encoding" not in echoed
    assert "accept" not in echoed
    assert "content-type" not in echoed


def test_forward_path_is_not_encoded_again(flavour_server):
    config = make_config(flavour_urls={"high": flavour_server.url})

    (response,) = forward_all(config, [relayed("/files/a%2Fb")])

    assert response.status == 200
    assert json.loads(response.body)["path"] == "/files/a/b"  # werkzeug decodes %2F once


def test_forward_accepts_long_response_header():
    app = Flask("long-header")

    @app.get("/long")
    def long_header():
        return Response("ok", headers={"X-Long": "v" * 20_000})  # over aiohttp's 8190-byte limit

    server = LoopbackServer(app)
    try:
        config = make_config(flavour_urls={"high": server.url})
        (response,) = forward_all(config, [replace(relayed("/long"), method="GET")])
    finally:
        server.close()

    assert response.status == 200
    assert dict(response.headers)["X-Long"] == "v" * 20_000



def test_forward_keeps_latin1_response_header_bytes():
    app = Flask("latin1-header")

    @app.get("/latin1")
    def latin1_header():
        return Response("ok", headers={"X-Name": "caf\u00e9"})  # werkzeug sends the byte 0xE9

    server = LoopbackServer(app)
    try:
        config = make_config(flavour_urls={"high": server.url})
        (response,) = forward_all(config, [replace(relayed("/latin1"), method="GET")])
    finally:
        server.close()

    # The router's WSGI server encodes header values as latin-1, so the value
    # must be the received bytes decoded as latin-1.
    assert response.status == 200
    assert dict(response.headers)["X-Name"].encode("latin-1") == b"caf\xe9"

@pytest.mark.parametrize("path", ["@127.0.0.1:{port}/hit", "127.0.0.1:{port}/hit", "*"])
def test_path_without_slash_never_reaches_other_host(flavour_server, path):
    # A path glued to the flavour's base URL without a leading slash would
    # become part of its authority ("http://flavour@host:port/hit") and send
    # the request to any host the consumer can reach.
    hits = []
    other_app = Flask("other-host")

    @other_app.route("/hit")
    def hit():
        hits.append(1)
        return Response("reached", status=200)

    other = LoopbackServer(other_app)
    try:
        port = other.url.rsplit(":", 1)[1]
        config = make_config(flavour_urls={"high": flavour_server.url})
        [response] = forward_all(config, [relayed(path.format(port=port))])
    finally:
        other.close()

    assert hits == []
    assert response.status == 400
    assert "must start with /" in json.loads(response.body)["error"]


def test_large_body_survives_small_reads():
    # Reads of a flavour connection take at most READ_BYTES, so this body needs several.
    payload = bytes(range(256)) * 2048  # 512 KiB
    app = Flask("large")
    app.add_url_rule("/large", "large", lambda: Response(payload, content_type="application/octet-stream"))
    server = LoopbackServer(app)
    try:
        config = make_config(flavour_urls={"high": server.url})
        responses = forward_all(config, [replace(relayed("/large"), method="GET", body=b"")] * 2)
    finally:
        server.close()
    assert [response.status for response in responses] == [200, 200]
    assert [len(response.body) for response in responses] == [len(payload)] * 2
    assert all(response.body == payload for response in responses)
