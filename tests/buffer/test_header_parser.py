"""The router's header parser: pywsgi's result for every block it accepts, 400 for malformed ones."""

from __future__ import annotations

import re
from io import BytesIO

import pytest
from gevent import pywsgi
from hypothesis import given, settings
from hypothesis import strategies as st

from buffer.gevent_worker import MAX_HEADERS, InvalidFraming, check_framing, parse_fields

BODY = b"body that must stay unread"
# RFC 9110 section 5.6.2, written out here rather than imported from the code under test.
TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def strict_pywsgi(stream):
    """pywsgi's parser, then the rejection the router adds: email defects and non-token names."""
    message = pywsgi.headers_factory(stream)
    if message.defects or not all(TOKEN.fullmatch(name) for name in message.keys()):
        raise InvalidFraming("rejected")
    return message


def parse_both(block: bytes) -> tuple[tuple, tuple]:
    """Parse `block` plus a body with both parsers; return what each produced and left unread."""
    results = []
    for parse in (parse_fields, strict_pywsgi):
        stream = BytesIO(block + BODY)
        try:
            message = parse(stream)
        except InvalidFraming:
            results.append("rejected")
            continue
        except Exception as error:  # noqa: BLE001 - both must fail the same way
            results.append((type(error).__name__, str(error)))
            continue
        results.append(
            (
                message.status,
                list(message.items()),
                list(message.headers),
                message.typeheader,
                message.getheader("content-length"),
                stream.read(),
            )
        )
    return results[0], results[1]


def test_plain_block_matches():
    block = b"Host: router\r\nContent-Type: application/json\r\nContent-Length: 12\r\nX-A:  spaced \r\n\r\n"
    fast, standard = parse_both(block)
    assert fast == standard
    assert fast[1][1] == ("Content-Type", "application/json")


def test_repeated_fields_keep_order():
    fast, standard = parse_both(b"X-A: 1\r\nX-B: 2\r\nX-A: 3\r\n\r\n")
    assert fast == standard
    assert fast[1] == [("X-A", "1"), ("X-B", "2"), ("X-A", "3")]


def test_odd_blocks_match():
    blocks = [
        b"X-A: one\r\n  folded\r\n\r\n",  # obsolete line folding
        b"Bad Name: x\r\nHost: y\r\n\r\n",  # the email parser would end the fields here
        b": empty name\r\n\r\n",
        b"X-A: a\rb\r\nHost: y\r\n\r\n",  # a lone carriage return
        b"X-A: caf\xe9\r\n\r\n",
        b"X-A: " + b"v" * 70000 + b"\r\n\r\n",  # longer than http.client's line limit
        b"".join(b"X-%d: v\r\n" % number for number in range(MAX_HEADERS + 1)) + b"\r\n",
        b"".join(b"X-%d: v\r\n" % number for number in range(MAX_HEADERS)) + b"\r\n",
        b"X-A: no end",
        b"\n",
    ]
    for block in blocks:
        fast, standard = parse_both(block)
        assert fast == standard, block[:80]


@pytest.mark.parametrize(
    "block",
    [
        b"Bad Name: x\r\nContent-Length: 5\r\n\r\n",  # pywsgi alone would drop the Content-Length
        b"Host: y\r\nX-A : v\r\n\r\n",
        b"NoColon\r\nHost: y\r\n\r\n",
        b"X(A): v\r\n\r\n",
        b"X-A: a\rb\r\n\r\n",
        b" first line folded\r\nHost: y\r\n\r\n",
    ],
)
def test_malformed_lines_rejected(block):
    with pytest.raises(InvalidFraming):
        parse_fields(BytesIO(block))


def framing(block: bytes, version: str = "HTTP/1.1") -> str:
    try:
        check_framing(parse_fields(BytesIO(block)), version)
    except InvalidFraming as error:
        return str(error)
    return "ok"


@pytest.mark.parametrize(
    ("block", "version", "expected"),
    [
        (b"Content-Length: 12\r\n\r\n", "HTTP/1.1", "ok"),
        (b"Content-Length:  12 \r\n\r\n", "HTTP/1.0", "ok"),
        (b"transfer-encoding: Chunked\r\n\r\n", "HTTP/1.1", "ok"),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "HTTP/1.1", "Length together"),
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1", "Length together"),
        (b"Transfer-Encoding: chunked\r\n\r\n", "HTTP/1.0", "needs HTTP/1.1"),
        (b"Transfer-Encoding: gzip, chunked\r\n\r\n", "HTTP/1.1", "not supported"),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1", "not supported"),
        (b"Transfer-Encoding: chunked \r\n\r\n", "HTTP/1.1", "not supported"),
        (b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", "HTTP/1.1", "more than one"),
        (b"Content-Length: 1_0\r\n\r\n", "HTTP/1.1", "invalid Content-Length"),
        (b"Content-Length: +5\r\n\r\n", "HTTP/1.1", "invalid Content-Length"),
        (b"Content-Length: \xb2\r\n\r\n", "HTTP/1.1", "invalid Content-Length"),  # latin-1 superscript two
        (b"Content-Length: \r\n\r\n", "HTTP/1.1", "invalid Content-Length"),
    ],
)
def test_ambiguous_framing_rejected(block, version, expected):
    assert expected in framing(block, version)


header_bytes = st.binary(min_size=0, max_size=12).map(
    lambda raw: bytes(b if b not in (10, 13) else 32 for b in raw)
)
header_line = st.one_of(
    st.builds(
        lambda name, value: name + b":" + value + b"\r\n",
        st.sampled_from([b"X-A", b"Host", b"a_b", b""]),
        header_bytes,
    ),
    st.builds(lambda raw: raw + b"\r\n", st.binary(max_size=16)),
    st.sampled_from([b" folded\r\n", b"\tfolded\r\n", b"X: a\rb\r\n", b"X:\n"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(header_line, max_size=8))
def test_random_blocks_match(lines):
    fast, standard = parse_both(b"".join(lines) + b"\r\n")
    assert fast == standard
