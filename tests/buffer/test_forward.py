"""The forwarder on its own: flavour URLs with a path prefix and invalid flavour URLs."""

from __future__ import annotations

import json
import time

import pytest

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


def test_flavour_url_path_prefix_is_kept(flavour_server):
    config = make_config(flavour_urls={"high": flavour_server.url + "/v1"})
    forwarder = Forwarder(config)

    for _ in range(2):  # the second call reuses the pool built by the first
        response = forwarder.forward(relayed("/avg", "x=1"), FLAVOURS[0])
        echoed = json.loads(response.body)
        assert response.status == 200
        assert echoed["path"] == "/v1/avg"
        assert echoed["query"] == "x=1"
        assert echoed["headers"]["x-carbonrouter"] == "100"


def test_flavour_url_without_http_scheme_gives_502():
    config = make_config(flavour_urls={"high": "ftp://127.0.0.1:21"})
    response = Forwarder(config).forward(relayed("/avg"), FLAVOURS[0])

    assert response.status == 502
    assert "ftp://127.0.0.1:21" in json.loads(response.body)["error"]
