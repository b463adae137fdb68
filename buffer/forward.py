"""Forwarding one relayed request to its flavour over HTTP.

In a cluster every flavour sits behind one Service (`TARGET_URL`), and the
mesh routes on the `x-carbonrouter: <precision>` header. Locally each flavour
has its own base URL (`FLAVOUR_URLS`). The header is sent in both modes.

Connection errors and 502/503/504 answers are retried with exponential
backoff, at most `forward_attempts` times and never past the request's
deadline, so a flavour restarting behind a Service does not fail the request.
Each attempt's timeout is `forward_timeout`, shorter than the router's, so the
consumer's own answer (a 502 or 504 when the flavour fails) still reaches the
router before the router gives up. The HTTP client is urllib3 directly: one
thread-safe PoolManager keeps connections to every flavour alive, and it costs
less CPU per call than requests, which matters because every buffered request
pays for it.
"""

from __future__ import annotations

import json
import logging
import time

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

from buffer import metrics
from buffer.config import BufferConfig, FlavourSpec
from buffer.messages import RelayedRequest, RelayedResponse, end_to_end_headers

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({502, 503, 504})
FORCE_HEADER = "x-carbonrouter"


class Forwarder:
    """Sends requests to flavours and turns every outcome into a RelayedResponse."""

    def __init__(self, config: BufferConfig) -> None:
        self._config = config
        # One pool per flavour host, each keeping up to `prefetch` connections:
        # the most requests the consumer ever has in flight.
        self._pool = urllib3.PoolManager(num_pools=len(config.flavours) + 1, maxsize=config.prefetch)

    def base_url(self, flavour: FlavourSpec) -> str:
        url = self._config.flavour_urls.get(flavour.name) or self._config.target_url
        if not url:
            raise LookupError(
                f"no URL for flavour {flavour.name}: set FLAVOUR_URLS={flavour.name}=http://... or TARGET_URL"
            )
        return url

    def forward(self, request: RelayedRequest, flavour: FlavourSpec) -> RelayedResponse:
        """Forward with retries, and return a 502 or 504 response when the flavour never responds."""
        started = time.monotonic()
        try:
            url = self.base_url(flavour) + request.path + (f"?{request.query}" if request.query else "")
        except LookupError as error:
            return _error_response(502, str(error), flavour)
        headers = {key: value for key, value in request.headers if key.lower() != FORCE_HEADER}
        headers[FORCE_HEADER] = str(flavour.precision)

        attempts = max(1, self._config.forward_attempts)
        for attempt in range(1, attempts + 1):
            reply, failure = self._attempt(request, url=url, headers=headers)
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
            time.sleep(delay)
        metrics.CONSUMER_FORWARD_LATENCY.labels(flavour=flavour.name).observe(time.monotonic() - started)

        if reply is not None:
            return RelayedResponse(reply.status, reply.headers, reply.body, flavour.name)
        # urllib3 2.x derives NewConnectionError (connection refused) from its timeout class.
        timed_out = isinstance(failure, TimeoutError) and not isinstance(failure, NewConnectionError)
        status = 504 if timed_out else 502
        log.warning("event=forward_failed flavour=%s url=%s error=%r", flavour.name, url, failure)
        return _error_response(status, f"flavour {flavour.name} did not answer: {failure}", flavour)

    def _attempt(self, request: RelayedRequest, *, url: str, headers: dict):
        timeout = self._config.forward_timeout
        if request.deadline_ms:
            timeout = max(0.1, min(timeout, request.deadline_ms / 1000 - time.time()))
        try:
            answer = self._pool.request(
                request.method,
                url,
                body=request.body or None,
                headers=headers,
                timeout=urllib3.Timeout(total=timeout),
                retries=False,
                redirect=False,
            )
        except HTTPError as error:
            return None, error
        relayed = RelayedResponse(
            status=answer.status,
            headers=end_to_end_headers(answer.headers.items()),
            body=answer.data,
        )
        return relayed, None


def _error_response(status: int, message: str, flavour: FlavourSpec) -> RelayedResponse:
    body = json.dumps({"error": message}).encode()
    return RelayedResponse(status, (("Content-Type", "application/json"),), body, flavour.name)
