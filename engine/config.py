"""Engine-level configuration: what the process needs beyond each schedule's own spec.

`EngineConfig` is plain data passed to `create_app`. Handlers and sessions
never read the environment: `EngineConfig.from_env` reads the variables below,
and only `engine.metrics` (`PROMETHEUS_MULTIPROC_DIR`) and the gunicorn config
read others:

| variable | meaning | default |
|---|---|---|
| `ENGINE_DEFAULT_SCHEDULE` | `namespace/name` served by `GET /schedule` | none (404) |
| `ENGINE_MANUAL_TTL_MAX` | longest manual override, seconds | 86400 |
| `ENGINE_LOG_LEVEL` | level of the `engine` loggers (DEBUG, INFO, WARNING) | INFO |
| `ENGINE_DEMAND_FORECAST` | `0` turns the statsmodels demand forecast off | `1` |
| `CARBON_*` | carbon source settings (trace, start, speed-up, staleness); docs/carbon.md | bundled trace |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


def carbon_settings_from_env(env: Mapping[str, str]) -> dict:
    """Return the carbon settings the carbon package reads from the environment, if it is installed."""
    try:
        from engine.carbon import settings_from_env
    except ImportError:
        return {}
    return settings_from_env(env)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class EngineConfig:
    """Settings of one engine app; every field has a default that works with no environment."""

    default_schedule: str | None = None
    manual_ttl_max: timedelta = timedelta(hours=24)
    carbon_settings: dict = field(default_factory=dict)
    # Called as source_factory(target, timeout=..., cache_ttl=..., settings=...); None uses
    # engine.carbon.build_source.
    source_factory: Callable | None = None
    # Called with a policy name, returns a Policy instance; None instantiates POLICIES[name].
    policy_factory: Callable | None = None
    clock: Callable[[], datetime] = utc_now
    demand_forecast: bool = True
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineConfig:
        """Build the configuration from environment variables; invalid values raise ValueError."""
        env = os.environ if environ is None else environ
        default = env.get("ENGINE_DEFAULT_SCHEDULE", "").strip() or None
        if default is not None and default.count("/") != 1:
            raise ValueError(f"ENGINE_DEFAULT_SCHEDULE must be namespace/name, got {default!r}")
        ttl_raw = env.get("ENGINE_MANUAL_TTL_MAX", "86400")
        try:
            ttl_max = timedelta(seconds=float(ttl_raw))
        except ValueError as error:
            raise ValueError(f"ENGINE_MANUAL_TTL_MAX must be seconds, got {ttl_raw!r}") from error
        carbon = carbon_settings_from_env(env)
        level = env.get("ENGINE_LOG_LEVEL", "INFO").strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"ENGINE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        return cls(default_schedule=default, manual_ttl_max=ttl_max, carbon_settings=carbon,
                   demand_forecast=env.get("ENGINE_DEMAND_FORECAST", "1") != "0", log_level=level)

    @classmethod
    def coerce(cls, config: EngineConfig | dict | None) -> EngineConfig:
        """Accept an EngineConfig, a dict of its fields, or None (read the environment)."""
        if config is None:
            return cls.from_env()
        if isinstance(config, EngineConfig):
            return config
        return cls(**config)
