"""Clients that request a schedule's decision from the engine.

Both implementations send `PUT /config/<ns>/<name>` with the same JSON and
return the decision dict. `HttpEngine` goes over the network with a timeout
well under Metacontroller's hook timeout. `InProcessEngine` calls an engine
app in the same process through its Flask test client (render command,
benchmark, tests). Every failure becomes `EngineUnavailable` (try again later, keep
the last decision) or `EngineRejected` (the engine found the configuration
invalid; the spec needs fixing).
"""

from __future__ import annotations

import json
from typing import Protocol
from urllib.parse import quote

import requests

REQUIRED_DECISION_FIELDS = ("flavourWeights", "validUntil", "processing")


class EngineUnavailable(RuntimeError):
    """The engine could not be reached, timed out or returned an unusable response.

    `unreachable` is True only for a timeout or a failed connection, the
    failures that the circuit breaker in `hooks.breaker` counts.
    """

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


class EngineCallSkipped(EngineUnavailable):
    """The circuit breaker skipped the engine call because a recent call found the engine unreachable."""


class EngineRejected(ValueError):
    """The engine returned HTTP 400: the configuration it was sent is invalid."""

    def __init__(self, message: str, details: list[dict]):
        self.details = details
        super().__init__(message)


class EngineClient(Protocol):
    def put_config(self, namespace: str, name: str, configuration: dict) -> dict:
        """Send a schedule's configuration and return the engine's decision."""


def config_path(namespace: str, name: str) -> str:
    return f"/config/{quote(namespace, safe='')}/{quote(name, safe='')}"


def decision_from(status: int, body: bytes, *, where: str) -> dict:
    """Turn an engine response into a decision or raise the matching error."""
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        raise EngineUnavailable(f"{where}: returned HTTP {status} with a body that is not JSON") from None
    if status == 400:
        payload = payload if isinstance(payload, dict) else {}
        details = payload.get("details") or []
        message = payload.get("error", "invalid configuration")
        raise EngineRejected(f"{where}: {message}", details)
    if status != 200:
        raise EngineUnavailable(f"{where}: returned HTTP {status}")
    if not isinstance(payload, dict):
        raise EngineUnavailable(f"{where}: decision is not a JSON object")
    missing = [field for field in REQUIRED_DECISION_FIELDS if field not in payload]
    if missing:
        raise EngineUnavailable(f"{where}: decision is missing required fields {', '.join(missing)}")
    return payload


class HttpEngine:
    """Engine reached over HTTP with `requests` and a per-call timeout in seconds."""

    def __init__(self, base_url: str, *, timeout: float = 3.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def put_config(self, namespace: str, name: str, configuration: dict) -> dict:
        # NOTE: requests applies `timeout` to the connection and to each socket read,
        # not to the whole call, so an engine that trickles bytes could hold a sync
        # longer. The engine's responses are small JSON documents, so in practice they
        # arrive in one read and this bounds the call.
        url = self.base_url + config_path(namespace, name)
        try:
            response = self.session.put(url, json=configuration, timeout=self.timeout)
        except requests.Timeout:
            raise EngineUnavailable(f"PUT {url} timed out after {self.timeout} s", unreachable=True) from None
        except requests.ConnectionError as error:
            raise EngineUnavailable(f"PUT {url} failed: {type(error).__name__}", unreachable=True) from None
        except requests.RequestException as error:
            raise EngineUnavailable(f"PUT {url} failed: {type(error).__name__}") from None
        return decision_from(response.status_code, response.content, where=f"PUT {url}")


class InProcessEngine:
    """Engine app running in this process, called through its Flask test client."""

    def __init__(self, app):
        self.client = app.test_client()

    @classmethod
    def create(cls, config: dict | None = None) -> InProcessEngine:
        """Build a fresh engine with `engine.app.create_app(config)`."""
        from engine.app import create_app  # imported late: the engine pulls in statsmodels

        return cls(create_app(config or {}))

    def put_config(self, namespace: str, name: str, configuration: dict) -> dict:
        path = config_path(namespace, name)
        try:
            response = self.client.put(path, json=configuration)
        except Exception as error:  # an engine bug must look like an outage, not crash the hook
            message = f"PUT {path} (in-process) raised {type(error).__name__}: {error}"
            raise EngineUnavailable(message) from None
        return decision_from(response.status_code, response.get_data(), where=f"PUT {path} (in-process)")
