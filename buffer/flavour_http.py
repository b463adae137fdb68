"""A small HTTP/1.1 client for the consumer's calls to flavours, on asyncio with httptools' parser.

The consumer sends one request at a time on each connection and needs little
of a general client: no cookies, redirects, proxies or multipart bodies. A
general client costs far more per call. Driving carbonstat with 32
concurrent calls from one process, aiohttp 3.14 used 0.18-0.20 ms of CPU per
call and this client 0.05 ms (see docs/benchmarks.md). The response parsing
is httptools, the binding of llhttp that uvicorn uses.

- `FlavourPool` keeps idle keep-alive connections per origin (scheme, host,
  port) and opens a new one when none is idle. It has no connection limit:
  the channel's prefetch already bounds the calls in flight.
- `FlavourPool.request()` writes the request line, the caller's headers,
  `Host` and, when there is a body or the method usually carries one,
  `Content-Length`. Then it reads one response: the status, the headers as
  raw bytes decoded as latin-1, and the whole body, chunked or not.
- The caller's own `Host`, `Content-Length` and `Transfer-Encoding` are not
  sent, because they would contradict the client's framing. Go's net/http
  `Request.Write` skips the same headers.
- The trailer fields of a chunked body are dropped, not merged into the
  headers (RFC 9110 section 6.5.2).
- Bytes after the end of the response, such as a second response to one
  request, close the connection, so they never reach the next request.
- Header names must be tokens, and no value, method or target may contain a
  line break. Those raise `InvalidRequest` before anything is sent.
- A body compressed with gzip or deflate is decompressed and its
  `Content-Encoding` dropped, as aiohttp did, because routers before this
  client drop that header from every response. Other codings pass as they are.
- A response to HEAD has no body, whatever its headers say. Such a connection
  is closed afterwards, because llhttp would wait for that body.
- Informational (1xx) responses before the final one are skipped.
- A status line and headers longer than `MAX_HEADER_BLOCK_BYTES` in all fail
  the request, even before a line ends.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

READ_BYTES = 65536  # size of each connection's read buffer: below glibc's mmap threshold
MAX_FIELD_BYTES = 65536  # maximum bytes of one response header field, http.client's line limit
MAX_HEADER_BLOCK_BYTES = 1024 * 1024
IDLE_SECONDS = 15.0  # an idle connection older than this is closed instead of reused, as aiohttp does
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")
_FORBIDDEN_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")
_REPLACED_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110 section 9.2.2
_DECOMPRESSED = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class InvalidRequest(ValueError):
    """A request that cannot be written as HTTP/1.1: a line break in a value, a bad name or target."""


class ResponseError(ConnectionError):
    """The flavour closed the connection early or sent a response that could not be parsed."""


@dataclass(frozen=True)
class Origin:
    """The parts of a flavour's base URL: scheme, host, port, the `Host` header value and a path prefix."""

    scheme: str
    host: str
    port: int
    host_header: str
    path_prefix: str

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """Parse an http:// or https:// base URL; raise ValueError for anything else."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"flavour URL {base_url!r} is not an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"flavour URL {base_url!r} contains credentials, which are not supported")
        if parts.query or parts.fragment:
            raise ValueError(f"flavour URL {base_url!r} has a query or fragment; give only a base path")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as error:
            raise ValueError(f"flavour URL {base_url!r} has an invalid port: {error}") from None
        host_header = parts.netloc.rpartition("@")[2]
        return cls(parts.scheme, parts.hostname, port, host_header, parts.path.rstrip("/"))


@dataclass(frozen=True)
class FlavourReply:
    """A flavour's response: status, header pairs decoded as latin-1, and the body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class _Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection: one request at a time, its response parsed by httptools."""

    def __init__(self) -> None:
        self._buffer = memoryview(bytearray(READ_BYTES))
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future | None = None
        self._head_request = False
        self._received = False  # whether any byte of the current response arrived
        self._head_bytes = 0  # bytes of the current response read before its final headers ended
        self._reset_message()

    # Request side

    def send(self, data: bytes, *, head: bool) -> asyncio.Future:
        """Write one request and return a future for its FlavourReply."""
        self._waiter = asyncio.get_running_loop().create_future()
        self._head_request = head
        self._received = False
        self._head_bytes = 0
        self._reset_message()
        self.transport.write(data)
        return self._waiter

    @property
    def received_any(self) -> bool:
        return self._received

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # asyncio callbacks

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._received = True
        if self._waiter is None:
            # Bytes with no request waiting: the connection's state is unknown.
            self.abort()
            return
        try:
            self._parser.feed_data(self._buffer[:nbytes])
        except httptools.HttpParserUpgrade:
            self._fail(ResponseError("the flavour switched protocols, which is not supported"))
        except httptools.HttpParserError as error:
            cause = error.__context__ if isinstance(error, httptools.HttpParserCallbackError) else error
            self._fail(ResponseError(f"invalid response from the flavour: {cause}"))
            return
        if not self._headers_done and self._waiter is not None:
            # httptools keeps an unfinished line in memory, so a line that never ends is limited here.
            self._head_bytes += nbytes
            if self._head_bytes > MAX_HEADER_BLOCK_BYTES:
                message = f"the response's status line and headers exceed {MAX_HEADER_BLOCK_BYTES} bytes"
                self._fail(ResponseError(message))

    def eof_received(self) -> bool:
        # A body without Content-Length or chunked framing ends when the connection does.
        if self._waiter is not None and self._headers_done and not self._framed:
            self._finish(keep_alive=False)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None:
            if self._headers_done and not self._framed and exc is None:
                self._finish(keep_alive=False)
            else:
                reason = f": {exc}" if exc else ""
                self._fail(ResponseError(f"the flavour closed the connection mid-response{reason}"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None:
            # Another response followed the requested one in the same read. The rest
            # of it would otherwise become the reply to the next request.
            raise ResponseError("the flavour sent a response after the one requested")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if len(name) + len(value) + 2 > MAX_FIELD_BYTES:
            raise ResponseError(f"a response header is longer than {MAX_FIELD_BYTES} bytes")
        if self._header_bytes > MAX_HEADER_BLOCK_BYTES:
            raise ResponseError(f"the response headers are longer than {MAX_HEADER_BLOCK_BYTES} bytes")
        if self._headers_done:
            return  # a trailer field of a chunked body
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            self._framed = True
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._informational = True
            return
        self._headers_done = True
        if status in (204, 304):
            self._framed = True
        if self._head_request:
            self._finish(keep_alive=False)  # llhttp would wait for a body that never comes

    def on_body(self, body: bytes) -> None:
        if self._waiter is not None:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._reset_message()
            return
        if self._waiter is not None:
            self._finish(keep_alive=self._parser.should_keep_alive())

    # Helpers

    def _reset_message(self) -> None:
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._header_bytes = 0
        self._headers_done = False
        self._framed = False
        self._informational = False

    def _finish(self, *, keep_alive: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if not keep_alive:
            self.close()
        if waiter is None or waiter.done():
            return
        try:
            reply = _decoded(self._parser.get_status_code(), self._headers, b"".join(self._body))
        except zlib.error as error:
            waiter.set_exception(ResponseError(f"the flavour's compressed body is invalid: {error}"))
            return
        waiter.set_result(reply)

    def _fail(self, error: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


def _decoded(status: int, headers: list[tuple[str, str]], body: bytes) -> FlavourReply:
    """Return the reply with a gzip or deflate body decompressed and that Content-Encoding dropped."""
    codings = [value for name, value in headers if name.lower() == "content-encoding"]
    if len(codings) == 1 and body:
        wbits = _DECOMPRESSED.get(codings[0].strip().lower())
        if wbits is not None:
            body = _decompress(body, wbits)
            headers = [(name, value) for name, value in headers if name.lower() != "content-encoding"]
    return FlavourReply(status, tuple(headers), body)


def _decompress(body: bytes, wbits: int) -> bytes:
    if wbits == zlib.MAX_WBITS:
        try:
            return zlib.decompress(body, wbits)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # deflate sent without the zlib wrapper
    # A gzip body may contain several members (RFC 1952), and zlib.decompress stops after the first.
    parts = []
    while body:
        decompressor = zlib.decompressobj(wbits)
        parts.append(decompressor.decompress(body))
        if not decompressor.eof:
            raise zlib.error("the gzip body ends inside a member")
        body = decompressor.unused_data
    return b"".join(parts)


def request_bytes(
    method: str, target: str, origin: Origin, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    """Return the request line and header block; raise InvalidRequest for what HTTP/1.1 cannot carry."""
    if not _TOKEN.fullmatch(method):
        raise InvalidRequest(f"invalid method {method[:40]!r}: it must be a token")
    if _FORBIDDEN_IN_TARGET.search(target):
        raise InvalidRequest(f"invalid request target {target[:200]!r}: spaces and control characters")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host_header}"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise InvalidRequest(f"invalid header name {name[:100]!r}: it must be a token")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise InvalidRequest(f"invalid value of header {name}: it contains a line break or NUL")
        if name.lower() in _REPLACED_HEADERS:
            continue
        lines.append(f"{name}: {value}")
    if body or method in BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as error:
        raise InvalidRequest(f"a header or the target has a character outside latin-1: {error}") from None


class FlavourPool:
    """Keep-alive connections to flavours, per origin; one instance per event loop."""

    def __init__(self) -> None:
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None

    async def request(
        self, origin: Origin, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> FlavourReply:
        """Send one request and return the reply; raise InvalidRequest, OSError or ResponseError.

        The caller bounds the time with a timeout around this call. A reused
        connection that the flavour closed while it was idle fails before any
        response byte arrives. The request is then sent once more on a new
        connection if its method is idempotent, as aiohttp 3.x does. A flavour
        that read the request and closed without a response fails the same
        way, so a POST or PATCH is not sent again here.
        """
        data = request_bytes(method, target, origin, headers, body)
        head = method == "HEAD"
        connection, reused = await self._acquire(origin)
        try:
            reply = await self._exchange(connection, data, body, head)
        except ResponseError:
            if not reused or connection.received_any or method not in IDEMPOTENT_METHODS:
                raise
            connection, reused = await self._connect(origin), False
            reply = await self._exchange(connection, data, body, head)
        finally:
            self._release(origin, connection)
        return reply

    async def close(self) -> None:
        """Close every connection, idle or busy."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        for connection in list(self._busy):
            # Fail the request before the abort, because a body that ends at the close would pass as complete.
            connection._fail(ResponseError("the connection to the flavour was closed by FlavourPool.close()"))
        self._busy.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks

    async def _exchange(self, connection: _Connection, data: bytes, body: bytes, head: bool) -> FlavourReply:
        self._busy.add(connection)
        try:
            # One write of head and body: a second small write would wait for
            # the flavour's delayed ACK on some stacks (Nagle's algorithm).
            return await connection.send(data + body if body else data, head=head)
        except BaseException:
            connection.abort()  # a cancelled or failed exchange leaves the connection's state unknown
            raise
        finally:
            self._busy.discard(connection)

    async def _acquire(self, origin: Origin) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection, True
            connection.close()
        return await self._connect(origin), False

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if origin.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        _, connection = await loop.create_connection(
            _Connection, origin.host, origin.port, ssl=tls, server_hostname=origin.host if tls else None
        )
        return connection

    def _release(self, origin: Origin, connection: _Connection) -> None:
        if connection.closed:
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(origin, deque()).append(connection)
