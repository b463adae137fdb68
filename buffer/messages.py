"""The AMQP message format of a relayed HTTP request and its response.

The message body is the raw HTTP body, so nothing is base64-encoded and large
bodies cost no extra copy. Everything else travels in the AMQP header table
under `cr-*` keys. They contain the method, path and query string, and the HTTP
headers as a JSON list of pairs, because a list keeps repeated headers and
their order. They also contain the chosen flavour, whether the client forced it,
and the deadline in epoch milliseconds after which the router stops waiting.
A reply carries the status, the response headers and the name of the flavour
that served it.

Hop-by-hop headers (RFC 9110 section 7.6.1) never cross the buffer, and
neither do `Host` and `Content-Length`: the HTTP client on each side
recomputes them for the body it really sends. A response also loses its
`Content-Encoding`, because the consumer's HTTP client decompresses the
flavour's body. A request keeps it, because its body is relayed as it arrived.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import pika

FORMAT_VERSION = 1

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)


class MessageError(ValueError):
    """A message that lacks a field or has a field of the wrong type, so it cannot be processed."""


@dataclass(frozen=True)
class RelayedRequest:
    """An HTTP request as the router received it, with the router's flavour choice."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    flavour: str
    forced: bool = False
    deadline_ms: int = 0

    def expired(self, now: float | None = None) -> bool:
        """Return True when the router has stopped waiting for this request's reply."""
        moment = time.time() if now is None else now
        return bool(self.deadline_ms) and moment * 1000 > self.deadline_ms


@dataclass(frozen=True)
class RelayedResponse:
    """A flavour's HTTP response on its way back to the router."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    flavour: str = ""


def end_to_end_headers(
    pairs: Iterable[tuple[str, str]], *, keep_content_encoding: bool = False
) -> tuple[tuple[str, str], ...]:
    """Drop hop-by-hop headers, including any the `Connection` header names.

    `Content-Encoding` is dropped too unless `keep_content_encoding` is set,
    which a request needs because its body is relayed still encoded.
    """
    pairs = list(pairs)
    dropped = HOP_BY_HOP - {"content-encoding"} if keep_content_encoding else HOP_BY_HOP
    named = set()
    for key, value in pairs:
        if key.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(","))
    return tuple(
        (key, value)
        for key, value in pairs
        if key.lower() not in dropped and key.lower() not in named
    )


def request_headers_table(request: RelayedRequest) -> dict:
    """Build the AMQP header table for a request message."""
    return {
        "cr-version": FORMAT_VERSION,
        "cr-method": request.method,
        "cr-path": request.path,
        "cr-query": request.query,
        "cr-headers": json.dumps(request.headers),
        "cr-flavour": request.flavour,
        "cr-forced": 1 if request.forced else 0,
        "cr-deadline": request.deadline_ms,
    }


def decode_request(properties: pika.BasicProperties, body: bytes) -> RelayedRequest:
    """Rebuild a request from a delivered message, or raise MessageError naming the invalid field."""
    table = properties.headers or {}
    if table.get("cr-version") != FORMAT_VERSION:
        raise MessageError(f"cr-version is {table.get('cr-version')!r}, expected {FORMAT_VERSION}")
    return RelayedRequest(
        method=_text(table, "cr-method"),
        path=_text(table, "cr-path"),
        query=_text(table, "cr-query", allow_empty=True),
        headers=_header_pairs(table, "cr-headers"),
        body=body or b"",
        flavour=_text(table, "cr-flavour"),
        forced=bool(table.get("cr-forced")),
        deadline_ms=_deadline_ms(table),
    )


def response_headers_table(response: RelayedResponse) -> dict:
    """Build the AMQP header table for a reply message."""
    return {
        "cr-version": FORMAT_VERSION,
        "cr-status": response.status,
        "cr-headers": json.dumps(response.headers),
        "cr-flavour": response.flavour,
    }


def decode_response(properties: pika.BasicProperties, body: bytes) -> RelayedResponse:
    """Rebuild a response from a reply message, or raise MessageError naming the invalid field."""
    table = properties.headers or {}
    status = table.get("cr-status")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise MessageError(f"cr-status is {status!r}, expected an HTTP status 100-599")
    return RelayedResponse(
        status=status,
        headers=_header_pairs(table, "cr-headers"),
        body=body or b"",
        flavour=_text(table, "cr-flavour", allow_empty=True),
    )


def _text(table: dict, key: str, *, allow_empty: bool = False) -> str:
    value = table.get(key)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or (not value and not allow_empty):
        raise MessageError(f"{key} is {value!r}, expected a non-empty string")
    return value


def _deadline_ms(table: dict) -> int:
    # A malformed deadline must raise MessageError, so the consumer dead-letters
    # the message instead of failing in its delivery callback.
    value = table.get("cr-deadline") or 0
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise MessageError(f"cr-deadline is {value!r}, expected epoch milliseconds as an integer") from None


def _header_pairs(table: dict, key: str) -> tuple[tuple[str, str], ...]:
    raw = table.get(key)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        pairs = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError as error:
        raise MessageError(f"{key} is not valid JSON: {error}") from None
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(item, str) for item in pair)
        for pair in pairs
    ):
        raise MessageError(f"{key} must be a JSON list of [name, value] string pairs")
    return tuple((name, value) for name, value in pairs)
