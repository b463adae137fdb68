"""Settings of the router and the consumer, read from the environment.

Both processes share one `BufferConfig`. `BufferConfig.from_env()` parses and
checks every variable once at start-up and raises `ConfigError` naming the
variable, the bad value and the expected form, so a misconfigured pod fails at
once instead of on its first request. Tests build a `BufferConfig` directly.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pika

DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
MAX_PREFETCH = 65535  # AMQP's basic.qos carries prefetch-count as a 16-bit field


class ConfigError(ValueError):
    """A setting is missing or malformed."""


@dataclass(frozen=True)
class FlavourSpec:
    """A flavour named in the configuration, with its precision (0-100)."""

    name: str
    precision: int


@dataclass(frozen=True)
class BufferConfig:
    """Every setting of the router and the consumer; `docs/buffer.md` explains each one."""

    flavours: tuple[FlavourSpec, ...]
    namespace: str = "default"
    schedule_name: str = "carbonstat"
    service: str = "carbonstat"
    rabbitmq_url: str = DEFAULT_RABBITMQ_URL
    engine_url: str = ""
    # Router
    request_timeout: float = 30.0
    max_body_bytes: int = 1024 * 1024
    max_unconfirmed_bytes: int = 64 * 1024 * 1024  # 0: no limit
    forcing_enabled: bool = True
    heartbeat: int = 30
    schedule_retry: float = 5.0
    schedule_max_age: float = 15.0
    metrics_path: str = "/metrics"
    health_path: str = "/healthz"
    retry_after: int = 1
    seed: int | None = None
    # Consumer
    flavour_urls: Mapping[str, str] = field(default_factory=dict)
    target_url: str = ""
    forward_timeout: float = 25.0
    forward_attempts: int = 3
    forward_backoff: float = 0.2
    prefetch: int = 16
    feedback_interval: float = 10.0
    consumer_metrics_port: int = 0
    consumer_metrics_bind: str = "0.0.0.0"
    dead_letter_enabled: bool = True

    def __post_init__(self) -> None:
        if not self.flavours:
            raise ConfigError("FLAVOURS is empty: set it to name:precision pairs, e.g. high:100,low:25")
        names = [f.name for f in self.flavours]
        if len(set(names)) != len(names):
            raise ConfigError(f"FLAVOURS has a duplicate name in {names}: give each flavour one entry")
        precisions = [f.precision for f in self.flavours]
        if len(set(precisions)) != len(precisions):
            raise ConfigError(
                f"FLAVOURS has a duplicate precision in {precisions}: each flavour needs its own queue"
            )
        unknown = sorted(set(self.flavour_urls) - set(names))
        if unknown:
            raise ConfigError(
                f"FLAVOUR_URLS names unknown flavours {unknown}: use only the flavours in FLAVOURS {names}"
            )
        if self.request_timeout <= 0 or self.forward_timeout <= 0:
            raise ConfigError(
                f"REQUEST_TIMEOUT={self.request_timeout} and FORWARD_TIMEOUT={self.forward_timeout} "
                "are invalid: both must be positive seconds"
            )
        if self.forward_timeout >= self.request_timeout:
            raise ConfigError(
                f"FORWARD_TIMEOUT={self.forward_timeout} must be shorter than REQUEST_TIMEOUT="
                f"{self.request_timeout}, or the router gives up before the consumer's reply arrives"
            )
        if not 1 <= self.prefetch <= MAX_PREFETCH:
            raise ConfigError(
                f"CONSUMER_PREFETCH={self.prefetch} is invalid: it must be at least 1 "
                f"and at most {MAX_PREFETCH}"
            )
        self._check_ranges()
        self._check_urls()

    def _check_ranges(self) -> None:
        at_least_zero = {
            "RABBITMQ_HEARTBEAT": self.heartbeat,
            "MAX_BODY_BYTES": self.max_body_bytes,
            "RETRY_AFTER_SECONDS": self.retry_after,
            "FORWARD_BACKOFF_SECONDS": self.forward_backoff,
        }
        for key, value in at_least_zero.items():
            if value < 0:
                raise ConfigError(f"{key}={value:g} is invalid: it must be 0 or more")
        # Below MAX_BODY_BYTES the limit could not hold, because a request is
        # always published when nothing else is unconfirmed, however large it is.
        if self.max_unconfirmed_bytes != 0 and self.max_unconfirmed_bytes < self.max_body_bytes:
            raise ConfigError(
                f"MAX_UNCONFIRMED_BYTES={self.max_unconfirmed_bytes} is invalid: set it to at least "
                f"MAX_BODY_BYTES={self.max_body_bytes}, or to 0 for no limit"
            )
        # A zero period would make the background loops call the engine without pause.
        positive = {
            "FEEDBACK_INTERVAL_SECONDS": self.feedback_interval,
            "SCHEDULE_RETRY_SECONDS": self.schedule_retry,
            "SCHEDULE_MAX_AGE_SECONDS": self.schedule_max_age,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key}={value:g} is invalid: it must be a positive number of seconds")
        if not 0 <= self.consumer_metrics_port <= 65535:
            raise ConfigError(
                f"CONSUMER_METRICS_PORT={self.consumer_metrics_port} is invalid: "
                "use a port 1-65535, or 0 for off"
            )

    def _check_urls(self) -> None:
        # pika raises IndexError, among others, on some malformed URLs.
        try:
            valid = urlsplit(self.rabbitmq_url).scheme in ("amqp", "amqps")
            pika.URLParameters(self.rabbitmq_url)
        except (ValueError, IndexError, KeyError, TypeError):
            valid = False
        if not valid:
            raise ConfigError(
                f"RABBITMQ_URL={_redact(self.rabbitmq_url)!r} is invalid: "
                "write amqp://user:password@host:port/vhost"
            )
        if self.engine_url and urlsplit(self.engine_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"ENGINE_URL={self.engine_url!r} is invalid: write http://host:port or unset it"
            )

    @property
    def schedule_key(self) -> str:
        return f"{self.namespace}/{self.schedule_name}"

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.{self.service}"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.exchange}.queue.dead-letter"

    def queue_for(self, flavour: FlavourSpec) -> str:
        return f"{self.exchange}.queue.precision-{flavour.precision}"

    def flavour_named(self, name: str) -> FlavourSpec | None:
        for flavour in self.flavours:
            if flavour.name == name:
                return flavour
        return None

    @property
    def most_precise(self) -> FlavourSpec:
        return max(self.flavours, key=lambda f: f.precision)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BufferConfig:
        """Build the configuration from environment variables (or the given mapping)."""
        env = os.environ if environ is None else environ
        reader = _EnvReader(env)
        return cls(
            flavours=parse_flavours(env.get("FLAVOURS", "")),
            namespace=reader.text("SCHEDULE_NAMESPACE", "default"),
            schedule_name=reader.text("SCHEDULE_NAME", "carbonstat"),
            service=reader.text("SERVICE_NAME", "carbonstat"),
            rabbitmq_url=reader.text("RABBITMQ_URL", DEFAULT_RABBITMQ_URL),
            engine_url=reader.text("ENGINE_URL", "").rstrip("/"),
            request_timeout=reader.number("REQUEST_TIMEOUT", 30.0),
            max_body_bytes=int(reader.number("MAX_BODY_BYTES", 1024 * 1024)),
            max_unconfirmed_bytes=int(reader.number("MAX_UNCONFIRMED_BYTES", 64 * 1024 * 1024)),
            forcing_enabled=reader.flag("FORCING_ENABLED", True),
            heartbeat=int(reader.number("RABBITMQ_HEARTBEAT", 30)),
            schedule_retry=reader.number("SCHEDULE_RETRY_SECONDS", 5.0),
            schedule_max_age=reader.number("SCHEDULE_MAX_AGE_SECONDS", 15.0),
            metrics_path=reader.text("ROUTER_METRICS_PATH", "/metrics"),
            health_path=reader.text("ROUTER_HEALTH_PATH", "/healthz"),
            retry_after=int(reader.number("RETRY_AFTER_SECONDS", 1)),
            seed=reader.integer("ROUTER_SEED"),
            flavour_urls=parse_flavour_urls(env.get("FLAVOUR_URLS", "")),
            target_url=reader.text("TARGET_URL", "").rstrip("/"),
            forward_timeout=reader.number(
                "FORWARD_TIMEOUT", max(0.5, reader.number("REQUEST_TIMEOUT", 30.0) - 5.0)
            ),
            forward_attempts=int(reader.number("FORWARD_ATTEMPTS", 3)),
            forward_backoff=reader.number("FORWARD_BACKOFF_SECONDS", 0.2),
            prefetch=int(reader.number("CONSUMER_PREFETCH", 16)),
            feedback_interval=reader.number("FEEDBACK_INTERVAL_SECONDS", 10.0),
            consumer_metrics_port=int(reader.number("CONSUMER_METRICS_PORT", 0)),
            consumer_metrics_bind=reader.text("CONSUMER_METRICS_BIND", "0.0.0.0"),
            dead_letter_enabled=reader.flag("DEAD_LETTER_ENABLED", True),
        )


def log_level(key: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    """Return the logging level name in environment variable `key`, or raise ConfigError."""
    env = os.environ if environ is None else environ
    raw = env.get(key, "").strip()
    level = raw.upper() or default
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError(f"{key}={raw!r} is invalid: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def parse_flavours(text: str) -> tuple[FlavourSpec, ...]:
    """Parse `high:100,mid:50,low:25` into flavour specs (precision 0-100)."""
    flavours = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, precision = item.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"FLAVOURS entry {item!r} is invalid: write name:precision, e.g. high:100")
        try:
            value = int(precision)
        except ValueError:
            raise ConfigError(
                f"FLAVOURS entry {item!r} has a non-integer precision: use an integer 0-100"
            ) from None
        if not 0 <= value <= 100:
            raise ConfigError(f"FLAVOURS entry {item!r} has precision {value} outside 0-100")
        flavours.append(FlavourSpec(name=name.strip(), precision=value))
    return tuple(flavours)


def parse_flavour_urls(text: str) -> dict[str, str]:
    """Parse `high=http://127.0.0.1:8101,low=http://...` into a name -> base URL map."""
    urls = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        url = url.strip()
        if not sep or not name.strip() or not url.startswith(("http://", "https://")):
            raise ConfigError(f"FLAVOUR_URLS entry {item!r} is invalid: write name=http://host:port")
        urls[name.strip()] = url.rstrip("/")
    return urls


def _redact(url: str) -> str:
    # The URL may contain the broker password, which must not reach a log line.
    try:
        password = urlsplit(url).password
    except ValueError:
        return "(a URL that cannot be parsed)"
    if password is None:
        return url
    return url.replace(f":{password}@", ":***@", 1)


class _EnvReader:
    """Typed access to environment variables with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, key: str, default: str) -> str:
        value = self._env.get(key, "").strip()
        return value or default

    def number(self, key: str, default: float) -> float:
        raw = self._env.get(key, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not a number: set it to a number or unset it") from None
        if not math.isfinite(value):
            raise ConfigError(f"{key}={raw!r} is not a finite number: set it to a number or unset it")
        return value

    def integer(self, key: str) -> int | None:
        raw = self._env.get(key, "").strip()
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not an integer: set it to an integer or unset it") from None

    def flag(self, key: str, default: bool) -> bool:
        raw = self._env.get(key, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={raw!r} is not a boolean: use true or false")
