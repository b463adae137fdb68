"""Names and labels of the children, kept within Kubernetes' length limits.

Child names are `<schedule>-<role>`; RabbitMQ queues are
`<namespace>.<service>.queue.precision-<p>` so that KEDA queries and the
buffer agree on them. A name longer than its limit keeps a readable prefix
and ends in eight hex digits of the SHA-256 of the full name. The same
schedule therefore always gets the same short name, and two long names that
share a prefix still differ.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL_MAX = 63  # Service names (RFC 1035 label); used for every child
LABEL_VALUE_MAX = 63
HASH_DIGITS = 8

SCHEDULE_LABEL = "carbonrouter/schedule"
COMPONENT_LABEL = "app.kubernetes.io/component"


def shorten(name: str, limit: int = DNS_LABEL_MAX) -> str:
    """Return `name`, or a prefix plus a hash suffix when it exceeds `limit`."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:HASH_DIGITS]
    prefix = name[: limit - HASH_DIGITS - 1].rstrip("-._")
    return f"{prefix}-{digest}"


def child_name(*parts: str) -> str:
    """Join parts into a lowercase RFC 1035 label, shortened when too long.

    Dots (allowed in a TrafficSchedule's name) become dashes because Service
    names may not contain them.
    """
    joined = "-".join(parts).lower()
    cleaned = re.sub(r"[^a-z0-9-]", "-", joined).strip("-")
    return shorten(cleaned)


def label_value(value: str) -> str:
    """Return `value` fit for a label value (at most 63 characters)."""
    return shorten(value, LABEL_VALUE_MAX)


def queue_name(*, namespace: str, service: str, precision: int) -> str:
    """Name of the RabbitMQ queue of one flavour."""
    return f"{namespace}.{service}.queue.precision-{precision}"

