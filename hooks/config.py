"""Configuration of the hooks, read once from the environment.

Everything a rendered child needs from outside the TrafficSchedule comes from
here: images, where the engine listens, the RabbitMQ Secret. The Flask app,
the render command and the tests pass one `HookConfig` around instead of
reading globals inside request handlers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRD_PATH = REPO_ROOT / "metacontroller" / "crd-trafficschedule.yaml"
DEFAULT_TEMPLATES_DIR = REPO_ROOT / "templates"
DEFAULT_ENGINE_URL = "http://carbonrouter-engine.carbonrouter-system.svc.cluster.local"


@dataclass(frozen=True)
class HookConfig:
    """Settings of the hooks process; `from_env` documents each variable."""

    engine_url: str = DEFAULT_ENGINE_URL
    engine_timeout: float = 3.0  # seconds; Metacontroller's hook timeout is 10 s
    engine_cooldown_seconds: float = 5.0  # engine calls skipped after a timeout; 0 never skips
    workload_engine_url: str = DEFAULT_ENGINE_URL
    router_image: str = "carbonrouter/router:0.1.0"
    consumer_image: str = "carbonrouter/consumer:0.1.0"
    rabbitmq_secret: str = "carbonrouter-rabbitmq"
    rabbitmq_secret_key: str = "url"
    cluster_domain: str = "cluster.local"
    retry_seconds: float = 15.0  # resync delay while the engine is unreachable
    max_resync_seconds: float = 300.0
    crd_path: Path = DEFAULT_CRD_PATH
    templates_dir: Path = DEFAULT_TEMPLATES_DIR

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HookConfig:
        """Build the configuration from HOOKS_* variables; unset ones keep their defaults.

        Raises ValueError naming the variable when a number does not parse.
        """
        env = os.environ if environ is None else environ
        defaults = cls()
        # ENGINE_URL is accepted too, the name the buffer and the local stack use.
        engine_url = (env.get("HOOKS_ENGINE_URL") or env.get("ENGINE_URL") or defaults.engine_url).rstrip("/")
        return cls(
            engine_url=engine_url,
            engine_timeout=_seconds(env, "HOOKS_ENGINE_TIMEOUT", defaults.engine_timeout),
            engine_cooldown_seconds=_seconds(env, "HOOKS_ENGINE_COOLDOWN_SECONDS",
                                             defaults.engine_cooldown_seconds, allow_zero=True),
            # Routers and consumers may reach the engine by another address
            # than the hooks do (for example through a NetworkPolicy-scoped name).
            workload_engine_url=env.get("HOOKS_WORKLOAD_ENGINE_URL", engine_url).rstrip("/"),
            router_image=env.get("HOOKS_ROUTER_IMAGE", defaults.router_image),
            consumer_image=env.get("HOOKS_CONSUMER_IMAGE", defaults.consumer_image),
            rabbitmq_secret=env.get("HOOKS_RABBITMQ_SECRET", defaults.rabbitmq_secret),
            rabbitmq_secret_key=env.get("HOOKS_RABBITMQ_SECRET_KEY", defaults.rabbitmq_secret_key),
            cluster_domain=env.get("HOOKS_CLUSTER_DOMAIN", defaults.cluster_domain),
            retry_seconds=_seconds(env, "HOOKS_RETRY_SECONDS", defaults.retry_seconds),
            max_resync_seconds=_seconds(env, "HOOKS_MAX_RESYNC_SECONDS", defaults.max_resync_seconds),
            crd_path=Path(env.get("HOOKS_CRD_PATH", str(defaults.crd_path))),
            templates_dir=Path(env.get("HOOKS_TEMPLATES_DIR", str(defaults.templates_dir))),
        )


def _seconds(env, variable: str, default: float, *, allow_zero: bool = False) -> float:
    raw = env.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a number of seconds; set it to e.g. 3") from None
    if not math.isfinite(value):
        raise ValueError(f"{variable}={raw!r} must be a finite number of seconds; set it to e.g. 3")
    if value < 0 or (value == 0 and not allow_zero):
        expected = "zero or positive" if allow_zero else "positive"
        raise ValueError(f"{variable}={raw!r} must be {expected}")
    return value
