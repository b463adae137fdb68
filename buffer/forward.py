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

The HTTP client is `buffer.flavour_http.FlavourPool`, created on the event
loop that first forwards a request and kept until `close()`. It keeps
connections to each flavour alive between requests, sends the client's
headers as they are and adds only `Host`, `Content-Length` and
`x-carbonrouter`. The path, already percent-encoded by the router, is sent
as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from buffer import metrics
from buffer.config import BufferConfig, FlavourSpec
from buffer.flavour_http import FlavourPool, InvalidRequest, Origin, ResponseError
from buffer.messages import RelayedRequest, RelayedResponse, end_to_end_headers

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({502, 503, 504})
FORCE_HEADER = "x-carbonrouter"


class Forwarder:
    """Sends requests to flavours and turns every outcome into a RelayedResponse.

    One instance serves one event loop at a time: `forward()` must run on the
    loop that created the pool, and `close()` on the same loop ends it.
    """

    def __init__(self, config: BufferConfig) -> None:
        self._config = config
        self._pool: FlavourPool | None = None
        self._origins: dict[str, Origin] = {}

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
            origin = self._origin(base)
        except (LookupError, ValueError) as error:
            return _error_response(502, str(error), flavour)
        if not request.path.startswith("/"):
            # Appended to the base URL, such a path would become part of its
            # authority ("@host:port/...") and reach a host other than the flavour.
            message = f"request path {request.path[:200]!r} is invalid: it must start with /"
            log.warning("event=invalid_path flavour=%s path=%r", flavour.name, request.path[:200])
            return _error_response(400, message, flavour)
        target = origin.path_prefix + request.path + (f"?{request.query}" if request.query else "")
        headers = [(key, value) for key, value in request.headers if key.lower() != FORCE_HEADER]
        headers.append((FORCE_HEADER, str(flavour.precision)))

        attempts = max(1, self._config.forward_attempts)
        for attempt in range(1, attempts + 1):
            try:
                reply, failure = await self._attempt(request, origin=origin, target=target, headers=headers)
            except InvalidRequest as error:
                log.warning("event=invalid_request flavour=%s error=%s", flavour.name, error)
                return _error_response(400, str(error), flavour)
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
        # asyncio.timeout raises TimeoutError. A refused or reset connection is an OSError of another kind.
        status = 504 if isinstance(failure, TimeoutError) else 502
        log.warning(
            "event=forward_failed flavour=%s url=%s error=%r", flavour.name, base + request.path, failure
        )
        reason = str(failure) or type(failure).__name__  # a timeout's str() is empty
        return _error_response(status, f"flavour {flavour.name} did not answer: {reason}", flavour)

    async def close(self) -> None:
        """Close the pool and its connections. The next `forward()` opens a new pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _origin(self, base: str) -> Origin:
        origin = self._origins.get(base)
        if origin is None:
            origin = self._origins[base] = Origin.parse(base)
        return origin

    async def _attempt(
        self, request: RelayedRequest, *, origin: Origin, target: str, headers: list[tuple[str, str]]
    ) -> tuple[RelayedResponse | None, Exception | None]:
        timeout = self._config.forward_timeout
        if request.deadline_ms:
            timeout = max(0.1, min(timeout, request.deadline_ms / 1000 - time.time()))
        if self._pool is None:
            self._pool = FlavourPool()
        try:
            async with asyncio.timeout(timeout):
                reply = await self._pool.request(origin, request.method, target, headers, request.body)
        except (TimeoutError, OSError, ResponseError) as error:
            return None, error
        headers = end_to_end_headers(reply.headers)
        return RelayedResponse(status=reply.status, headers=headers, body=reply.body), None


def _error_response(status: int, message: str, flavour: FlavourSpec) -> RelayedResponse:
    body = json.dumps({"error": message}).encode()
    return RelayedResponse(status, (("Content-Type", "application/json"),), body, flavour.name)
