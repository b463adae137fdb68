"""The AMQP message format of a relayed HTTP request and its response.

The message body is the raw HTTP body, so nothing is base64-encoded and large
bodies cost no extra copy. Everything else travels in AMQP headers, in one of
two format versions:

- Version 2, which routers publish, puts everything in one header, `cr`,
  whose value is a JSON object. A request's object has the keys `version`,
  `method`, `path`, `query`, `headers`, `flavour`, `forced` (a boolean) and
  `deadline` (epoch milliseconds after which the router stops waiting, 0 for
  none). A reply's object has `version`, `status`, `headers` and `flavour`
  (the flavour that served it). One JSON string costs one C-accelerated
  `json` call to encode and one to decode, while every entry of an AMQP
  header table costs pika and the broker work of their own.
- Version 1 puts each field in its own header-table entry under a `cr-*` key,
  with the HTTP headers as a JSON string and `cr-forced` as 0 or 1.

In both versions the HTTP headers are a list of [name, value] pairs, because
a list keeps repeated headers and their order. Decoding accepts both
versions, and a consumer writes each reply in the version of its request.
So upgrade consumers first and routers second: an upgraded consumer replies
to a router still on version 1 in version 1, while a consumer still on
version 1 dead-letters every version 2 request. A message that fails
validation raises `MessageError`, which names the field, and the consumer
dead-letters it.

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

FORMAT_VERSION = 2  # the version written unless a caller asks for another, so routers publish it
FORMAT_HEADER = "cr"  # the one AMQP header of a version 2 message

# One encoder for every message: `json.dumps` with non-default arguments would build a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)

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
        # The router's WSGI server has handled `Expect: 100-continue` and read the
        # whole body, so the flavour must not wait to send a 100 of its own.
        "expect",
    }
)


# A request keeps `Content-Encoding`, because its body is relayed still encoded.
_REQUEST_HOP_BY_HOP = HOP_BY_HOP - {"content-encoding"}


class MessageError(ValueError):
    """A message that lacks a field or has a field of the wrong type, so it cannot be processed."""


@dataclass(frozen=True)
class RelayedRequest:
    """An HTTP request as the router received it, with the router's flavour choice.

    `format_version` is the message format it was decoded from, so the
    consumer can reply in the format the router reads.
    """

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    flavour: str
    forced: bool = False
    deadline_ms: int = 0
    format_version: int = FORMAT_VERSION

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
    dropped = _REQUEST_HOP_BY_HOP if keep_content_encoding else HOP_BY_HOP
    kept = []
    named = ()
    for key, value in pairs:
        lower = key.lower()
        if lower == "connection":
            named = {token.strip().lower() for token in value.split(",")} | set(named)
        if lower not in dropped:
            kept.append((key, value, lower))
    return tuple((key, value) for key, value, lower in kept if lower not in named)


def request_headers_table(request: RelayedRequest, *, version: int = FORMAT_VERSION) -> dict:
    """Build the AMQP header table for a request message in format `version` (1 or 2)."""
    if version == 2:
        fields = {
            "version": 2,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "flavour": request.flavour,
            "forced": request.forced,
            "deadline": request.deadline_ms,
        }
        return {FORMAT_HEADER: _ENCODER.encode(fields)}
    if version != 1:
        raise _unsupported_version(version)
    return {
        "cr-version": 1,
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
    if FORMAT_HEADER not in table:
        return _decode_request_v1(table, body)
    fields = _format_fields(table[FORMAT_HEADER])
    return RelayedRequest(
        method=_field(fields, "method", str, allow_empty=False),
        path=_field(fields, "path", str, allow_empty=False),
        query=_field(fields, "query", str),
        headers=_string_pairs(_field(fields, "headers", list), "cr.headers"),
        body=body or b"",
        flavour=_field(fields, "flavour", str, allow_empty=False),
        forced=_field(fields, "forced", bool),
        deadline_ms=_field(fields, "deadline", int),
        format_version=2,
    )


def response_headers_table(response: RelayedResponse, *, version: int = FORMAT_VERSION) -> dict:
    """Build the AMQP header table for a reply message in format `version` (1 or 2).

    The consumer passes the version of the request, so the router that sent it can read the reply.
    """
    if version == 2:
        fields = {
            "version": 2,
            "status": response.status,
            "headers": response.headers,
            "flavour": response.flavour,
        }
        return {FORMAT_HEADER: _ENCODER.encode(fields)}
    if version != 1:
        raise _unsupported_version(version)
    return {
        "cr-version": 1,
        "cr-status": response.status,
        "cr-headers": json.dumps(response.headers),
        "cr-flavour": response.flavour,
    }


def decode_response(properties: pika.BasicProperties, body: bytes) -> RelayedResponse:
    """Rebuild a response from a reply message, or raise MessageError naming the invalid field."""
    table = properties.headers or {}
    if FORMAT_HEADER not in table:
        return _decode_response_v1(table, body)
    fields = _format_fields(table[FORMAT_HEADER])
    status = _field(fields, "status", int)
    if not 100 <= status <= 599:
        raise MessageError(f"cr.status is {status!r}, expected an HTTP status 100-599")
    return RelayedResponse(
        status=status,
        headers=_string_pairs(_field(fields, "headers", list), "cr.headers"),
        body=body or b"",
        flavour=_field(fields, "flavour", str),
    )


def _unsupported_version(version: object) -> ValueError:
    return ValueError(f"message format version {version!r} is not supported, expected 1 or 2")


def _format_fields(encoded: object) -> dict:
    """Parse the `cr` header of a version 2 message and check its version."""
    if isinstance(encoded, bytes):
        try:
            encoded = encoded.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MessageError(f"the cr header is not valid UTF-8: {error}") from None
    if not isinstance(encoded, str):
        raise MessageError(f"the cr header is {encoded!r:.80}, expected a JSON object as a string")
    try:
        fields = json.loads(encoded)
    except (ValueError, RecursionError) as error:
        raise MessageError(f"the cr header is not valid JSON: {error}") from None
    if not isinstance(fields, dict):
        raise MessageError(f"the cr header is {encoded:.80}, expected a JSON object")
    if "version" not in fields:
        raise MessageError("cr.version is missing, expected 2")
    version = fields["version"]
    if type(version) is int and version > 2:
        raise MessageError(
            f"cr.version is {version}, but this process reads only format versions 1 and 2."
            " Upgrade it if a newer router or consumer sent the message."
        )
    if type(version) is not int or version != 2:
        raise MessageError(f"cr.version is {version!r:.80}, expected 2")
    return fields


_EXPECTED = {str: "a string", list: "a JSON list", bool: "true or false", int: "an integer"}


def _field(fields: dict, key: str, kind: type, *, allow_empty: bool = True):
    """Fetch `fields[key]` and check that it has exactly type `kind`, or raise MessageError naming it."""
    if key not in fields:
        raise MessageError(f"cr.{key} is missing, expected {_EXPECTED[kind]}")
    value = fields[key]
    # An exact type check, because JSON true and false arrive as bool, a subclass of int.
    if type(value) is not kind or (not value and not allow_empty):
        expected = "a non-empty string" if kind is str and not allow_empty else _EXPECTED[kind]
        raise MessageError(f"cr.{key} is {value!r:.80}, expected {expected}")
    return value


def _decode_request_v1(table: dict, body: bytes) -> RelayedRequest:
    if table.get("cr-version") != 1:
        raise MessageError(
            f"cr-version is {table.get('cr-version')!r} and the cr header is missing,"
            " expected message format version 1 or 2"
        )
    return RelayedRequest(
        method=_text(table, "cr-method"),
        path=_text(table, "cr-path"),
        query=_text(table, "cr-query", allow_empty=True),
        headers=_header_pairs(table, "cr-headers"),
        body=body or b"",
        flavour=_text(table, "cr-flavour"),
        forced=bool(table.get("cr-forced")),
        deadline_ms=_deadline_ms(table),
        format_version=1,
    )


def _decode_response_v1(table: dict, body: bytes) -> RelayedResponse:
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
    except (ValueError, RecursionError) as error:
        raise MessageError(f"{key} is not valid JSON: {error}") from None
    return _string_pairs(pairs, key)


def _string_pairs(pairs: object, key: str) -> tuple[tuple[str, str], ...]:
    # A plain loop, because nested all() generators took twice as long for four pairs.
    if not isinstance(pairs, list):
        raise _invalid_pairs(key)
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise _invalid_pairs(key)
        if not (isinstance(pair[0], str) and isinstance(pair[1], str)):
            raise _invalid_pairs(key)
    return tuple(map(tuple, pairs))


def _invalid_pairs(key: str) -> MessageError:
    return MessageError(f"{key} must be a JSON list of [name, value] string pairs")
