"""The flavour HTTP client against raw loopback servers that send exact bytes.

Each `RawServer` is a listening socket on 127.0.0.1 that runs a handler in a
thread per accepted connection. So one server works for a test's own event
loop, where tests call `FlavourPool` directly, and for the fresh loop of
`forward_all`, where tests check how `Forwarder` maps an outcome to a status.
A handler that returns without closing its socket keeps reading until the
client closes the connection, so tests can check that the client discarded it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from buffer.flavour_http import FlavourPool, InvalidRequest, Origin, ResponseError
from tests.buffer.helpers import free_port, make_config
from tests.buffer.test_forward import forward_all, relayed

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def reply_bytes(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    """Return a response with a Content-Length body and the given header lines."""
    head = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class Peer:
    """The server side of one accepted connection."""

    def __init__(self, sock: socket.socket, server: RawServer, index: int) -> None:
        self.sock = sock
        self.server = server
        self.index = index  # 0 for the server's first connection
        self.closed_by_server = False
        self.client_closed = threading.Event()  # set when the client closed or reset the connection
        self._pending = bytearray()

    def run(self, handler: Callable[[Peer], None]) -> None:
        try:
            handler(self)
            while not self.closed_by_server and self.read_request() is not None:
                pass  # record anything else the client sends until it closes
        except OSError:
            self.client_closed.set()
        finally:
            self.sock.close()

    def read_request(self) -> bytes | None:
        """Read and record one request with its Content-Length body. Return None when the client closed."""
        while b"\r\n\r\n" not in self._pending:
            if not self._receive():
                return None
        end = self._pending.index(b"\r\n\r\n") + 4
        length = 0
        for line in bytes(self._pending[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self._pending) < end + length:
            if not self._receive():
                return None
        request = bytes(self._pending[: end + length])
        del self._pending[: end + length]
        self.server.record(request)
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.closed_by_server = True
        self.sock.close()

    def _receive(self) -> bool:
        data = self.sock.recv(1 << 20)
        if not data:
            self.client_closed.set()
            return False
        self._pending += data
        return True


class RawServer:
    """A loopback TCP server that runs `handler(peer)` in a new thread for each accepted connection."""

    def __init__(self, handler: Callable[[Peer], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.origin = Origin.parse(self.url)
        self.peers: list[Peer] = []
        self.requests: list[bytes] = []
        self._changed = threading.Condition()
        self._handler = handler
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def accepts(self) -> int:
        return len(self.peers)

    def record(self, request: bytes) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def wait_requests(self, count: int, timeout: float = 2.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.requests) >= count, timeout)

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread on Linux
        self._listener.close()
        for peer in self.peers:
            if not peer.closed_by_server:
                try:
                    peer.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            peer = Peer(sock, self, len(self.peers))
            self.peers.append(peer)
            threading.Thread(target=peer.run, args=(self._handler,), daemon=True).start()


@pytest.fixture
def serve():
    servers: list[RawServer] = []

    def start(handler: Callable[[Peer], None]) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def respond_each(response: bytes, *, then_close: bool = False) -> Callable[[Peer], None]:
    """Return a handler that sends `response` to every request, and closes after the first if `then_close`."""

    def handler(peer: Peer) -> None:
        while peer.read_request() is not None:
            peer.send(response)
            if then_close:
                peer.close()
                return

    return handler


def run_pool(scenario, *, timeout: float = 5.0):
    """Run `scenario(pool)` on a fresh event loop with a new FlavourPool, closed afterwards."""

    async def main():
        pool = FlavourPool()
        try:
            async with asyncio.timeout(timeout):
                return await scenario(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Let the event loop run until `predicate()` is true; raise TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def names(headers) -> set[str]:
    return {name.lower() for name, _ in headers}


# Response framing


@dataclass(frozen=True)
class Framing:
    response: bytes
    status: int
    body: bytes
    connections: int  # connections that two sequential requests need
    then_close: bool = False
    absent: tuple[str, ...] = ()  # header names the reply must not have


FRAMINGS = {
    "content-length": Framing(reply_bytes(b"hello"), 200, b"hello", 1),
    "content-length-zero": Framing(reply_bytes(b""), 200, b"", 1),
    "chunked-extensions-trailers": Framing(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"5;name=value\r\nhello\r\n1;flag\r\n \r\n5\r\nworld\r\n0\r\nX-Checksum: abc\r\n\r\n",
        200,
        b"hello world",
        1,
        absent=("x-checksum",),  # RFC 9110 section 6.5.2: trailer fields are not merged into the headers
    ),
    "until-close": Framing(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close",
        200,
        b"body until close",
        2,
        True,
    ),
    "http-1.0": Framing(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", 2),
    "connection-close": Framing(reply_bytes(b"ok", "Connection: close"), 200, b"ok", 2),
    "204": Framing(b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", 1),
    "304-with-length": Framing(
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 100\r\n\r\n', 304, b"", 1
    ),
    "100-and-103-first": Framing(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        + reply_bytes(b"final"),
        200,
        b"final",
        1,
        absent=("link",),
    ),
}


@pytest.mark.parametrize("case", FRAMINGS.values(), ids=FRAMINGS.keys())
def test_pool_reads_response_framing(serve, case: Framing):
    server = serve(respond_each(case.response, then_close=case.then_close))

    async def scenario(pool):
        return [await pool.request(server.origin, "GET", f"/{n}", [], b"") for n in range(2)]

    replies = run_pool(scenario)

    assert [reply.status for reply in replies] == [case.status] * 2
    assert [reply.body for reply in replies] == [case.body] * 2
    assert server.accepts == case.connections
    assert [request.split(b" ")[1] for request in server.requests] == [b"/0", b"/1"]
    for name in case.absent:
        assert name not in names(replies[0].headers)


def test_head_response_skips_body_and_closes(serve):
    # The server announces 10 bytes, as a response to GET would carry, and sends none.
    server = serve(respond_each(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"))

    async def scenario(pool):
        head = await pool.request(server.origin, "HEAD", "/", [], b"")
        await asyncio.to_thread(server.peers[0].client_closed.wait, 2)
        return head

    head = run_pool(scenario, timeout=2)

    assert head.status == 200
    assert head.body == b""
    assert ("Content-Length", "10") in head.headers
    assert server.peers[0].client_closed.is_set()


# Content codings


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CODINGS = {
    "gzip": ("gzip", gzip.compress),
    "x-gzip": ("x-gzip", gzip.compress),
    "deflate-zlib": ("deflate", zlib.compress),
    "deflate-raw": ("deflate", raw_deflate),
    "upper-case": ("GZIP", gzip.compress),
}
PAYLOAD = b'{"numbers": [1, 2, 3]}' * 50


@pytest.mark.parametrize("coding, compress", CODINGS.values(), ids=CODINGS.keys())
def test_pool_decompresses_body(serve, coding, compress):
    server = serve(respond_each(reply_bytes(compress(PAYLOAD), f"Content-Encoding: {coding}", "X-Kept: 1")))

    reply = run_pool(lambda pool: pool.request(server.origin, "GET", "/", [], b""))

    assert reply.body == PAYLOAD
    assert "content-encoding" not in names(reply.headers)
    assert ("X-Kept", "1") in reply.headers


def test_pool_decompresses_chunked_gzip_body(serve):
    compressed = gzip.compress(PAYLOAD)
    half = len(compressed) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (compressed[:half], compressed[half:]))
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    server = serve(respond_each(response))

    reply = run_pool(lambda pool: pool.request(server.origin, "GET", "/", [], b""))

    assert reply.body == PAYLOAD


def test_pool_decompresses_every_gzip_member(serve):
    # RFC 1952 allows several members in one gzip body, as `cat a.gz b.gz` produces.
    body = gzip.compress(PAYLOAD) + gzip.compress(b"second member")
    server = serve(respond_each(reply_bytes(body, "Content-Encoding: gzip")))

    reply = run_pool(lambda pool: pool.request(server.origin, "GET", "/", [], b""))

    assert reply.body == PAYLOAD + b"second member"


def test_pool_passes_unknown_coding_through(serve):
    brotli_bytes = b"\x8b\x02\x80hello\x03"  # "hello" as brotli; the client must not touch it
    server = serve(respond_each(reply_bytes(brotli_bytes, "Content-Encoding: br")))

    reply = run_pool(lambda pool: pool.request(server.origin, "GET", "/", [], b""))

    assert reply.body == brotli_bytes
    assert ("Content-Encoding", "br") in reply.headers


CORRUPT = {
    "gzip-garbage": ("gzip", b"this is not compressed"),
    "gzip-truncated": ("gzip", gzip.compress(PAYLOAD)[:-12]),
    "gzip-trailing-garbage": ("gzip", gzip.compress(PAYLOAD) + b"garbage"),
    "deflate-garbage": ("deflate", b"this is not compressed"),
}


@pytest.mark.parametrize("coding, body", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_compressed_body_gives_502(serve, coding, body):
    server = serve(respond_each(reply_bytes(body, f"Content-Encoding: {coding}")))
    config = make_config(flavour_urls={"high": server.url}, forward_attempts=1)

    (response,) = forward_all(config, [replace(relayed("/"), method="GET", body=b"")])

    assert response.status == 502
    assert "compressed body is invalid" in json.loads(response.body)["error"]


# Invalid responses


@dataclass(frozen=True)
class Broken:
    response: bytes
    then_close: bool = False


BROKEN = {
    "garbage": Broken(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    "invalid-status": Broken(b"HTTP/1.1 abc OK\r\n\r\n"),
    "closed-before-response": Broken(b"", then_close=True),
    "truncated-head": Broken(b"HTTP/1.1 200 OK\r\nContent-Le", then_close=True),
    "truncated-length-body": Broken(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", then_close=True),
    "truncated-chunked-body": Broken(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", then_close=True
    ),
    "invalid-chunk-size": Broken(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"),
    "duplicate-length": Broken(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"),
    "length-and-chunked": Broken(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "switching-protocols": Broken(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
    "long-header-field": Broken(b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * 70_000 + b"\r\n\r\n"),
    "huge-header-block": Broken(
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: %s\r\n" % (n, b"v" * 60_000) for n in range(20)) + b"\r\n"
    ),
    # No line end ever comes, so only a limit on the bytes read stops the client's buffering.
    "endless-header-field": Broken(b"HTTP/1.1 200 OK\r\nX-Endless: " + b"v" * (3 << 20)),
    "endless-status-line": Broken(b"HTTP/1.1 200 " + b"O" * (3 << 20)),
}


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_invalid_response_raises_and_drops_connection(serve, case: Broken):
    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(case.response)
        if case.then_close:
            peer.close()

    server = serve(handler)

    async def scenario(pool):
        with pytest.raises(ResponseError):
            await pool.request(server.origin, "POST", "/", [], b"{}")

    run_pool(scenario, timeout=2)

    assert len(server.requests) == 1  # a request on a new connection is never resent
    if not case.then_close:
        assert server.peers[0].client_closed.wait(2)


@pytest.mark.parametrize("case", ["garbage", "closed-before-response", "huge-header-block"])
def test_invalid_response_gives_502(serve, case):
    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(BROKEN[case].response)
        if BROKEN[case].then_close:
            peer.close()

    server = serve(handler)
    config = make_config(flavour_urls={"high": server.url}, forward_attempts=3, forward_backoff=0.01)

    (response,) = forward_all(config, [relayed("/avg")])

    assert response.status == 502
    assert "did not answer" in json.loads(response.body)["error"]
    assert len(server.requests) == 3
    assert server.accepts == 3


def test_refused_connection_gives_502():
    config = make_config(
        flavour_urls={"high": f"http://127.0.0.1:{free_port()}"}, forward_attempts=2, forward_backoff=0.01
    )

    (response,) = forward_all(config, [relayed("/avg")])

    assert response.status == 502


# Keep-alive


def test_sequential_requests_share_one_connection(serve):
    server = serve(respond_each(OK))

    async def scenario(pool):
        return [await pool.request(server.origin, "POST", f"/{n}", [], b"x") for n in range(5)]

    replies = run_pool(scenario)

    assert [reply.body for reply in replies] == [b"ok"] * 5
    assert server.accepts == 1
    assert [request.split(b" ")[1] for request in server.requests] == [b"/0", b"/1", b"/2", b"/3", b"/4"]


def test_connection_closed_while_idle_is_replaced(serve):
    server = serve(respond_each(OK, then_close=True))

    async def scenario(pool):
        first = await pool.request(server.origin, "POST", "/first", [], b"x")
        # Wait until the client has seen the close, so the next request must not pick that connection.
        await until(lambda: all(connection.closed for connection in pool._idle[server.origin]))
        second = await pool.request(server.origin, "POST", "/second", [], b"x")
        return first, second

    replies = run_pool(scenario)

    assert [reply.body for reply in replies] == [b"ok", b"ok"]
    assert server.accepts == 2
    assert [request.split(b" ")[1] for request in server.requests] == [b"/first", b"/second"]


def test_idle_close_race_resends_get(serve):
    # The server closes right after its response, and the next request follows at once. So the request
    # is written before the client reads the close, and the pool must send it on a new connection.
    server = serve(respond_each(OK, then_close=True))

    async def scenario(pool):
        return [await pool.request(server.origin, "GET", f"/{n}", [], b"") for n in range(3)]

    replies = run_pool(scenario)

    assert [reply.body for reply in replies] == [b"ok"] * 3
    assert server.accepts == 3
    assert [request.split(b" ")[1] for request in server.requests] == [b"/0", b"/1", b"/2"]


def test_idle_close_race_post_retried_by_forwarder(serve):
    server = serve(respond_each(OK, then_close=True))
    config = make_config(flavour_urls={"high": server.url}, forward_attempts=2, forward_backoff=0.01)

    responses = forward_all(config, [relayed("/a"), relayed("/b")])

    assert [response.status for response in responses] == [200, 200]
    assert [request.split(b" ")[1] for request in server.requests] == [b"/a", b"/b"]


def read_then_close_after_first(peer: Peer) -> None:
    """Respond to the first request of the first connection, and close after reading any other request."""
    if peer.index == 0:
        peer.read_request()
        peer.send(OK)
    peer.read_request()
    peer.close()


@pytest.mark.parametrize("method, copies", [("POST", 1), ("PATCH", 1), ("GET", 2), ("PUT", 2)])
def test_pool_resends_only_idempotent_methods(serve, method, copies):
    # RFC 9110 section 9.2.2: a client may retry an idempotent request on its own, and no other.
    server = serve(read_then_close_after_first)

    async def scenario(pool):
        await pool.request(server.origin, method, "/first", [], b"x")
        with pytest.raises(ResponseError):
            await pool.request(server.origin, method, "/second", [], b"x")

    run_pool(scenario)

    assert [request.split(b" ")[1] for request in server.requests] == [b"/first"] + [b"/second"] * copies


@pytest.mark.parametrize("method, copies", [("POST", 3), ("GET", 4)])
def test_forwarder_retries_are_bounded_by_attempts(serve, method, copies):
    # Every attempt of the Forwarder sends the request once more. For an
    # idempotent method the pool adds one resend when the first attempt used
    # a kept-alive connection, so a GET reaches the flavour attempts + 1 times.
    server = serve(read_then_close_after_first)
    config = make_config(flavour_urls={"high": server.url}, forward_attempts=3, forward_backoff=0.01)
    request = replace(relayed("/second"), method=method)

    first, second = forward_all(config, [replace(request, path="/first"), request])

    assert first.status == 200
    assert second.status == 502
    assert [request.split(b" ")[1] for request in server.requests] == [b"/first"] + [b"/second"] * copies


# Timeouts, cancellation and closing


def silent_first_connection(peer: Peer) -> None:
    """Read requests on the first connection without a response, and respond on every other connection."""
    if peer.index == 0:
        peer.read_request()
        return
    respond_each(OK)(peer)


@pytest.mark.parametrize("attempts", [1, 2])
def test_silent_flavour_gives_504(serve, attempts):
    server = serve(lambda peer: peer.read_request())
    config = make_config(
        flavour_urls={"high": server.url},
        forward_attempts=attempts,
        forward_timeout=0.3,
        forward_backoff=0.01,
    )

    started = time.monotonic()
    (response,) = forward_all(config, [relayed("/avg")])
    elapsed = time.monotonic() - started

    assert response.status == 504
    assert elapsed < attempts * 0.3 + 0.5
    assert len(server.requests) == attempts
    assert server.accepts == attempts  # a timed-out connection is never reused
    assert all(peer.client_closed.wait(2) for peer in server.peers)


def test_cancelled_request_closes_its_connection(serve):
    server = serve(silent_first_connection)

    async def scenario(pool):
        task = asyncio.create_task(pool.request(server.origin, "GET", "/slow", [], b""))
        assert await asyncio.to_thread(server.wait_requests, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(server.peers[0].client_closed.wait, 2)
        return await pool.request(server.origin, "GET", "/next", [], b"")

    reply = run_pool(scenario)

    assert reply.body == b"ok"
    assert server.accepts == 2


@pytest.mark.parametrize(
    "partial",
    [b"", b"HTTP/1.1 200 OK\r\n\r\nthe start of a body until close"],
    ids=["no-response", "partial-body"],
)
def test_pool_close_ends_all_connections(serve, partial):
    def handler(peer: Peer) -> None:
        if peer.index == 0:
            peer.read_request()
            peer.send(partial)
            return
        respond_each(OK)(peer)

    server = serve(handler)

    async def scenario(pool):
        busy = asyncio.create_task(pool.request(server.origin, "GET", "/busy", [], b""))
        assert await asyncio.to_thread(server.wait_requests, 1)
        if partial:
            await until(lambda: any(connection.received_any for connection in pool._busy))
        idle = await pool.request(server.origin, "GET", "/idle", [], b"")
        await pool.close()
        with pytest.raises(ResponseError):
            await busy  # a body cut short by close() must not pass as complete
        return idle

    idle = run_pool(scenario)

    assert idle.body == b"ok"
    assert server.accepts == 2
    assert all(peer.client_closed.wait(2) for peer in server.peers)


# Responses the server sends without a request


def extra_response_after_first(split: int | None) -> Callable[[Peer], None]:
    """Send two responses to the first request, the second held back from byte `split` to the next request."""
    extra = reply_bytes(b"EXTRA")

    def handler(peer: Peer) -> None:
        if peer.index > 0:
            respond_each(reply_bytes(b"fresh"))(peer)
            return
        peer.read_request()
        peer.send(reply_bytes(b"first") + extra[:split])
        rest = extra[split:] if split is not None else b""
        while peer.read_request() is not None:
            peer.send(rest or reply_bytes(b"reused"))
            rest = b""

    return handler


@pytest.mark.parametrize("split", [None, 20], ids=["whole-extra-response", "extra-response-head"])
def test_extra_response_drops_connection(serve, split):
    server = serve(extra_response_after_first(split))

    async def scenario(pool):
        return [await pool.request(server.origin, "GET", f"/{n}", [], b"") for n in range(2)]

    replies = run_pool(scenario)

    assert [reply.body for reply in replies] == [b"first", b"fresh"]
    assert server.accepts == 2


# Large bodies


def echo_body(chunked: bool) -> Callable[[Peer], None]:
    def handler(peer: Peer) -> None:
        while (request := peer.read_request()) is not None:
            body = request[request.index(b"\r\n\r\n") + 4 :]
            if not chunked:
                peer.send(reply_bytes(body))
                continue
            peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(body), 1 << 20):
                part = body[start : start + (1 << 20)]
                peer.send(b"%x\r\n%s\r\n" % (len(part), part))
            peer.send(b"0\r\n\r\n")

    return handler


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_bodies_in_both_directions(serve, chunked):
    payload = bytes(range(256)) * (6 << 12)  # 6 MiB
    server = serve(echo_body(chunked))

    async def scenario(pool):
        return [await pool.request(server.origin, "PUT", "/blob", [], payload) for _ in range(2)]

    replies = run_pool(scenario)

    assert [len(reply.body) for reply in replies] == [len(payload)] * 2
    assert all(reply.body == payload for reply in replies)
    assert server.accepts == 1


# Request bytes on the wire


def test_request_bytes_on_wire(serve):
    server = serve(respond_each(OK))
    headers = [("X-A", "1"), ("Accept", "*/*"), ("X-A", "2"), ("X-Name", "caf\u00e9")]

    run_pool(lambda pool: pool.request(server.origin, "GET", "/p/a%2Fb?q=1&q=2", headers, b""))

    assert server.requests == [
        b"GET /p/a%2Fb?q=1&q=2 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b"X-A: 1\r\nAccept: */*\r\nX-A: 2\r\nX-Name: caf\xe9\r\n\r\n"
    ]


@pytest.mark.parametrize(
    "method, body, tail",
    [
        ("GET", b"", b"\r\n"),
        ("DELETE", b"", b"\r\n"),
        ("POST", b"", b"Content-Length: 0\r\n\r\n"),
        ("PUT", b"", b"Content-Length: 0\r\n\r\n"),
        ("PATCH", b"{}", b"Content-Length: 2\r\n\r\n{}"),
        ("GET", b"q", b"Content-Length: 1\r\n\r\nq"),
    ],
)
def test_request_content_length_by_method(serve, method, body, tail):
    server = serve(respond_each(OK))

    run_pool(lambda pool: pool.request(server.origin, method, "/", [], body))

    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    assert server.requests == [f"{method} / HTTP/1.1\r\n".encode() + host + tail]


def test_caller_framing_headers_are_replaced(serve):
    # Host, Content-Length and Transfer-Encoding from the caller would contradict the client's own
    # framing (a second Content-Length, or chunked over a Content-Length body), so they are not sent.
    server = serve(respond_each(OK))
    headers = [
        ("Host", "other.example"),
        ("Content-Length", "99"),
        ("transfer-encoding", "chunked"),
        ("X-Kept", "1"),
    ]

    run_pool(lambda pool: pool.request(server.origin, "POST", "/", headers, b"abc"))

    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    assert server.requests == [b"POST / HTTP/1.1\r\n" + host + b"X-Kept: 1\r\nContent-Length: 3\r\n\r\nabc"]


def test_forwarder_request_bytes_on_wire(serve):
    server = serve(respond_each(OK))
    config = make_config(flavour_urls={"high": server.url + "/v1/"})
    request = replace(
        relayed("/avg", "x=1"), headers=(("Content-Type", "application/json"), ("X-Carbonrouter", "5"))
    )

    (response,) = forward_all(config, [request])

    assert response.status == 200
    assert server.requests == [
        b"POST /v1/avg?x=1 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b"Content-Type: application/json\r\nx-carbonrouter: 100\r\nContent-Length: 19\r\n\r\n"
        + request.body
    ]


INJECTIONS = {
    "crlf-in-value": ("GET", "/", [("X-A", "1\r\nX-Injected: 1")]),
    "lf-in-value": ("GET", "/", [("X-A", "1\nX-Injected: 1")]),
    "cr-in-value": ("GET", "/", [("X-A", "1\rX")]),
    "nul-in-value": ("GET", "/", [("X-A", "1\x00")]),
    "space-in-name": ("GET", "/", [("X A", "1")]),
    "colon-in-name": ("GET", "/", [("X-A:", "1")]),
    "empty-name": ("GET", "/", [("", "1")]),
    "value-beyond-latin-1": ("GET", "/", [("X-A", "\u20ac")]),
    "space-in-target": ("GET", "/a b", []),
    "control-in-target": ("GET", "/a\x01", []),
    "crlf-in-target": ("GET", "/a\r\nX-Injected: 1", []),
    "target-beyond-latin-1": ("GET", "/\u20ac", []),
    "space-in-method": ("GET /x", "/", []),
    "empty-method": ("", "/", []),
}


@pytest.mark.parametrize("method, target, headers", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_unwritable_request_raises_before_connecting(serve, method, target, headers):
    server = serve(respond_each(OK))

    async def scenario(pool):
        with pytest.raises(InvalidRequest):
            await pool.request(server.origin, method, target, headers, b"")

    run_pool(scenario)

    assert server.accepts == 0


@pytest.mark.parametrize(
    "change",
    [{"headers": (("X-A", "1\r\nX-Injected: 1"),)}, {"method": "GET /x"}, {"path": "/a b"}],
    ids=["header-value", "method", "path"],
)
def test_unwritable_request_gives_400(serve, change):
    server = serve(respond_each(OK))
    config = make_config(flavour_urls={"high": server.url})

    (response,) = forward_all(config, [replace(relayed("/avg"), **change)])

    assert response.status == 400
    assert server.accepts == 0


@pytest.mark.parametrize(
    "url, scheme, host, port, host_header, prefix",
    [
        ("http://flavour:8080/v1/", "http", "flavour", 8080, "flavour:8080", "/v1"),
        ("http://flavour", "http", "flavour", 80, "flavour", ""),
        ("https://flavour/", "https", "flavour", 443, "flavour", ""),
        ("http://[::1]:81", "http", "::1", 81, "[::1]:81", ""),
    ],
)
def test_origin_parse(url, scheme, host, port, host_header, prefix):
    assert Origin.parse(url) == Origin(scheme, host, port, host_header, prefix)


@pytest.mark.parametrize(
    "url",
    ["ftp://flavour", "http://", "http://user:secret@flavour", "http://flavour/?q=1", "http://flavour:99999"],
)
def test_origin_parse_rejects_url(url):
    with pytest.raises(ValueError):
        Origin.parse(url)
