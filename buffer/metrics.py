"""Prometheus metrics of the router and the consumer.

Label values come only from fixed sets: configured flavour names, the methods
in `METHODS` (anything else is `other`), status classes `1xx`-`5xx` and the
outcome and reason words listed next to each metric. A client sending odd
methods or paths therefore cannot grow the number of series.

The router runs under gunicorn with several worker processes; when
`PROMETHEUS_MULTIPROC_DIR` is set, `render_metrics()` merges every worker's
values with prometheus-client's multiprocess collector.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

ROUTER_INGRESS = Counter(
    "router_ingress_http_requests_total",
    "HTTP requests received by the router, by method and status class of the response.",
    ["method", "status_class"],
)
ROUTER_REQUESTS = Counter(
    "router_http_requests_total",
    "Requests the router relayed to a flavour, by flavour, method and status class.",
    ["flavour", "method", "status_class"],
)
ROUTER_LATENCY = Histogram(
    "router_request_duration_seconds",
    "Time from receiving a request to responding to it, by flavour.",
    ["flavour"],
    buckets=LATENCY_BUCKETS,
)
ROUTER_FALLBACK = Gauge(
    "router_schedule_fallback",
    "1 while the router has never received a decision and sends everything to the most precise flavour.",
    multiprocess_mode="max",
)
ROUTER_BROKER_ERRORS = Counter(
    "router_broker_errors_total",
    "Requests that got 503 or 504 because of the broker, by reason "
    "(connect, connection_lost, unroutable, nacked, backlog, timeout).",
    ["reason"],
)
ROUTER_STALE_REPLIES = Counter(
    "router_stale_replies_total",
    "Replies discarded because no request waits for their correlation id any more.",
)

CONSUMER_MESSAGES = Counter(
    "consumer_messages_total",
    "Messages the consumer finished, by flavour and outcome (answered, dead_lettered, expired, duplicate).",
    ["flavour", "outcome"],
)
CONSUMER_FORWARD_LATENCY = Histogram(
    "consumer_forward_duration_seconds",
    "Time the flavour took to respond to a forwarded request, retries included.",
    ["flavour"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_FORWARD_RETRIES = Counter(
    "consumer_forward_retries_total",
    "Forwarding attempts repeated after a connection error or a 502/503/504.",
    ["flavour"],
)
CONSUMER_INFLIGHT = Gauge("consumer_inflight_requests", "Requests being forwarded right now.")
CONSUMER_INFLIGHT_CAP = Gauge(
    "consumer_inflight_cap", "Maximum requests in flight: max(1, floor(prefetch * throttle))."
)
CONSUMER_FEEDBACK_POSTS = Counter(
    "consumer_feedback_posts_total",
    "Feedback reports posted to the engine, by outcome (ok, failed).",
    ["outcome"],
)
CONSUMER_BROKER_CONNECTED = Gauge(
    "consumer_broker_connected",
    "1 while the consumer is connected to the broker and consuming, 0 while it connects or reconnects.",
)
CONSUMER_FALLBACK = Gauge(
    "consumer_schedule_fallback",
    "1 while the consumer has never received a decision from the engine.",
)


_children: dict[tuple, object] = {}


def labelled(metric, *values: str):
    """Return `metric.labels(*values)`, cached for the calls made on every request.

    `labels()` validates the values and takes a lock on each call. It returns
    the same child object for the same values, so the cache changes nothing
    but the cost. The label values come from fixed sets, which bounds it.
    """
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def method_label(method: str) -> str:
    upper = method.upper()
    return upper if upper in METHODS else "other"


def status_class(status: int) -> str:
    return f"{max(1, min(5, status // 100))}xx"


def render_metrics() -> tuple[bytes, str]:
    """Return the metrics exposition and its content type, merged across workers when needed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
