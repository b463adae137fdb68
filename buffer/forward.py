"""Forwarding one relayed request to its flavour over HTTP, on the consumer's event loop.

In a cluster every flavour sits behind one Service (`TARGET_URL`), and the
mesh routes on the `x-carbonrouter: <precision>` header. Locally each flavour
has its own base URL (`FLAVOUR_URLS`). The header is sent in both modes.

Connection errors and 502/503/504 responses are retried with exponential
backoff, at most `forward_attempts` times and never past the request's
deadline, so a flavour restarting behind a Service does not fail the request.
Each attempt's timeout is `forward_timeout`, shorter than the router's, so the
consumer's own response (a 502 or 504 when the flavour fails) still reaches the
router before the router gives up.

The HTTP client is one `aiohttp.ClientSession`, created on the event loop
that first forwards a request and kept until `close()`. Its connector keeps
connections to each flavour alive between requests. The session sends the
client's headers as they are, because it is told not to add its own
`Accept`, `Accept-Encoding` and `Content-Type`. The path, already
percent-encoded by the router, is not encoded again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
from yarl import URL

from buffer import metrics
from buffer.config import BufferConfig, FlavourSpec
from buffer.messages import RelayedRequest, RelayedResponse, end_to_end_headers

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({502, 503, 504})
FORCE_HEADER = "x-carbonrouter"
# Headers aiohttp would otherwise add to every request. Only the client decides them.
SKIPPED_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type")
# Maximum length in bytes of a flavour response's status line and of each header field.
# aiohttp's default is 8190. 65536 is http.client's line limit in Python 3.11 (`_MAXLINE`).
MAX_HEADER_BYTES = 65536
READ_BYTES = 65536  # maximum bytes one read of a flavour connection takes from its socket


class Forwarder:
    """Sends requests to flavours and turns every outcome into a RelayedResponse.

    One instance serves one event loop at a time: `forward()` must run on the
    loop that created the session, and `close()` on the same loop ends it.
    """

    def __init__(self, config: BufferConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._checked_urls: set[str] = set()

    def base_url(self, flavour: FlavourSpec) -> str:
        url = self._config.flavour_urls.get(flavour.name) or self._config.target_url
        if not url:
            raise LookupError(
                f"no URL for flavour {flavour.name}: set FLAVOUR_URLS={flavour.name}=http://... or TARGET_URL"
            )
        return url

    async def forward(self, request: RelayedRequest, flavour: FlavourSpec) -> RelayedResponse:
        """Forward with retries, and return a 502 or 504 response when the flavour never responds."""
        started = time.monotonic()
        try:
            base = self.base_url(flavour)
            self._check_base_url(base)
        except (LookupError, ValueError) as error:
            return _error_response(502, str(error), flavour)
        if not request.path.startswith("/"):
            # Appended to the base URL, such a path would become part of its
            # authority ("@host:port/...") and reach a host other than the flavour.
            message = f"request path {request.path[:200]!r} is invalid: it must start with /"
            log.warning("event=invalid_path flavour=%s path=%r", flavour.name, request.path[:200])
            return _error_response(400, message, flavour)
        url = base + request.path + (f"?{request.query}" if request.query else "")
        # NOTE: aiohttp encodes header values as UTF-8, so a request header byte
        # outside ASCII (0xE9, which WSGI decodes as "é") reaches the flavour as two bytes.
        headers = [(key, value) for key, value in request.headers if key.lower() != FORCE_HEADER]
        headers.append((FORCE_HEADER, str(flavour.precision)))

        attempts = max(1, self._config.forward_attempts)
        for attempt in range(1, attempts + 1):
            reply, failure = await self._attempt(request, url=url, headers=headers)
            retriable = reply is None or reply.status in RETRIED_STATUSES
            delay = self._config.forward_backoff * 2 ** (attempt - 1)
            out_of_time = (
                request.deadline_ms and (time.time() + delay + 0.05) * 1000 >= request.deadline_ms
            )
            if not retriable or attempt == attempts or out_of_time:
                break
            metrics.CONSUMER_FORWARD_RETRIES.labels(flavour=flavour.name).inc()
            log.info(
                "event=forward_retry flavour=%s attempt=%d status=%s error=%s delay=%.2f",
                flavour.name,
                attempt,
                reply.status if reply else "none",
                failure,
                delay,
            )
            await asyncio.sleep(delay)
        metrics.labelled(metrics.CONSUMER_FORWARD_LATENCY, flavour.name).observe(time.monotonic() - started)

        if reply is not None:
            return RelayedResponse(reply.status, reply.headers, reply.body, flavour.name)
        # aiohttp's connect and read timeouts derive from TimeoutError (asyncio.TimeoutError), and so
        # does the error of a total timeout. A refused or reset connection does not.
        status = 504 if isinstance(failure, TimeoutError) else 502
        log.warning(
            "event=forward_failed flavour=%s url=%s error=%r", flavour.name, base + request.path, failure
        )
        reason = str(failure) or type(failure).__name__  # a timeout's str() is empty
        return _error_response(status, f"flavour {flavour.name} did not answer: {reason}", flavour)

    async def close(self) -> None:
        """Close the session and its connections. The next `forward()` opens a new session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _check_base_url(self, base: str) -> None:
        if base in self._checked_urls:
            return
        parsed = URL(base)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"flavour URL {base!r} is not an http:// or https:// URL with a host")
        self._checked_urls.add(base)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No connection limit: the channel's QoS prefetch already caps the requests in flight.
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                skip_auto_headers=SKIPPED_AUTO_HEADERS,
                max_line_size=MAX_HEADER_BYTES,
                max_field_size=MAX_HEADER_BYTES,
            )
        return self._session

    async def _attempt(
        self, request: RelayedRequest, *, url: str, headers: list[tuple[str, str]]
    ) -> tuple[RelayedResponse | None, Exception | None]:
        timeout = self._config.forward_timeout
        if request.deadline_ms:
            timeout = max(0.1, min(timeout, request.deadline_ms / 1000 - time.time()))
        session = self._open_session()
        try:
            async with session.request(
                request.method,
                URL(url, encoded=True),
                data=request.body or None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                _limit_read_size(response)
                body = await response.read()
        except (TimeoutError, aiohttp.ClientError) as error:
            return None, error
        # aiohttp decodes header values as UTF-8, but WSGI servers encode them as
        # latin-1, which fails on any non-ASCII byte. Decoding the raw bytes as
        # latin-1 lets the router send exactly the bytes the flavour sent.
        raw_headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers
        ]
        relayed = RelayedResponse(status=response.status, headers=end_to_end_headers(raw_headers), body=body)
        return relayed, None


def _limit_read_size(response: aiohttp.ClientResponse) -> None:
    # asyncio's socket transport reads with recv(256 KiB), which makes glibc
    # allocate and free each read's buffer with mmap, mremap and munmap: three
    # system calls per flavour response. Below glibc's default mmap threshold
    # of 128 KiB the heap serves the buffer. A larger body takes more reads.
    # NOTE: `max_size` is an attribute of CPython's transport, not a documented API;
    # where it is missing, reads keep asyncio's default size.
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if getattr(transport, "max_size", 0) > READ_BYTES:
        transport.max_size = READ_BYTES


def _error_response(status: int, message: str, flavour: FlavourSpec) -> RelayedResponse:
    body = json.dumps({"error": message}).encode()
    return RelayedResponse(status, (("Content-Type", "application/json"),), body, flavour.name)
