"""The command line and environment of every process in the local stack.

This module is the only place that names each part's entry point and the
environment variables it reads, so a renamed variable is fixed here once.
Before anything starts, `missing_entry_points` checks that every module the
stack runs exists, and `run` stops with a message naming what is missing
rather than faking that part.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import sys

from buffer.config import BufferConfig
from devstack.processes import ComponentSpec, StartError
from devstack.settings import FLAVOUR_NAMES, REPO_ROOT, StackSettings

# Module that must exist for each component, and what runs it.
ENTRY_POINTS = {
    "engine": "engine.wsgi",  # gunicorn -c engine/gunicorn.conf.py engine.wsgi:app
    "hooks": "hooks.app",  # gunicorn 'hooks.app:create_app()'
    "carbonstat": "carbonstat.app",  # gunicorn 'carbonstat.app:create_app()'
    "consumer": "buffer.consumer",  # python -m buffer.consumer
    "router": "buffer.router",  # gunicorn 'buffer.router:create_app()'
}

# Where the bundled GB trace replay starts unless --trace-start sets another: on
# 2023-03-25 from 12:00 UTC intensity rises from 54 to 188 gCO2/kWh in six hours,
# so a three-minute demo at the default 120x speed-up shows the mix move.
BUNDLED_TRACE_START = "2023-03-25T12:00:00Z"

FLAVOUR_PRECISION = {"high": 100, "mid": 50, "low": 25}

# devstack waits this much longer than the router's graceful timeout before it kills the router.
ROUTER_STOP_MARGIN = 3.0


def missing_entry_points() -> list[str]:
    """Return one line per component whose module cannot be found."""
    missing = []
    for component, module in ENTRY_POINTS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(f"{component}: module {module} not found")
    return missing


def gunicorn(app: str, *, settings: StackSettings, port: int, threads: int | None = None) -> list[str]:
    """Return the argv of one gunicorn master with a single threaded worker on loopback."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "1",
        "--threads",
        str(threads or settings.threads),
        "--bind",
        f"{settings.host}:{port}",
        "--graceful-timeout",
        "5",
        "--access-logfile",
        "-",
        # gunicorn 27 opens a control socket at one fixed path per user by default,
        # which every master of the stack would fight over.
        "--no-control-socket",
        app,
    ]


def engine_spec(settings: StackSettings) -> ComponentSpec:
    """Build the engine's spec: its own gunicorn settings, replaying the trace at the configured speed-up.

    Its settings file runs one worker only, because the engine keeps its
    sessions in memory and a second worker would keep a diverging copy.
    """
    env = {
        "ENGINE_DEFAULT_SCHEDULE": f"{settings.namespace}/{settings.name}",
        "CARBON_TRACE_SPEEDUP": f"{settings.speed_up:g}",
    }
    if settings.trace_actuals:
        env["CARBON_TRACE_ACTUAL"] = settings.trace_actuals
    if settings.trace_forecasts:
        env["CARBON_TRACE_FORECAST"] = settings.trace_forecasts
    if settings.trace_start:
        env["CARBON_TRACE_START"] = settings.trace_start
    elif not settings.trace_actuals:
        env["CARBON_TRACE_START"] = BUNDLED_TRACE_START
    env["ENGINE_BIND"] = f"{settings.host}:{settings.ports['engine']}"
    env["ENGINE_THREADS"] = str(settings.threads)
    config_file = str(REPO_ROOT / "engine" / "gunicorn.conf.py")
    return ComponentSpec(
        name="engine",
        argv=[sys.executable, "-m", "gunicorn", "-c", config_file, "--no-control-socket", "engine.wsgi:app"],
        env=env,
        health_url=settings.url("engine") + "/healthz",
        port=settings.ports["engine"],
    )


def hooks_spec(settings: StackSettings) -> ComponentSpec:
    return ComponentSpec(
        name="hooks",
        argv=gunicorn("hooks.app:create_app()", settings=settings, port=settings.ports["hooks"], threads=4),
        env={"ENGINE_URL": settings.url("engine")},
        health_url=settings.url("hooks") + "/healthz",
        port=settings.ports["hooks"],
    )


def carbonstat_spec(settings: StackSettings, flavour: str) -> ComponentSpec:
    component = f"carbonstat-{flavour}"
    return ComponentSpec(
        name=component,
        argv=gunicorn("carbonstat.app:create_app()", settings=settings, port=settings.ports[component]),
        env={"CARBONSTAT_FLAVOUR": flavour},
        health_url=settings.url(component) + "/healthz",
        port=settings.ports[component],
    )


def buffer_env(settings: StackSettings) -> dict[str, str]:
    """Environment shared by the router and the consumer (names from `buffer.config`)."""
    return {
        "FLAVOURS": ",".join(f"{name}:{FLAVOUR_PRECISION[name]}" for name in FLAVOUR_NAMES),
        "FLAVOUR_URLS": ",".join(f"{name}={settings.url('carbonstat-' + name)}" for name in FLAVOUR_NAMES),
        "SCHEDULE_NAMESPACE": settings.namespace,
        "SCHEDULE_NAME": settings.name,
        "SERVICE_NAME": settings.name,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "ENGINE_URL": settings.url("engine"),
        "CONSUMER_METRICS_PORT": str(settings.ports["consumer"]),
        "CONSUMER_METRICS_BIND": settings.host,
        # Served counts reach the ledger every 5 s unless the caller's environment sets another interval.
        "FEEDBACK_INTERVAL_SECONDS": os.environ.get("FEEDBACK_INTERVAL_SECONDS", "5"),
    }


def consumer_spec(settings: StackSettings) -> ComponentSpec:
    return ComponentSpec(
        name="consumer",
        argv=[sys.executable, "-m", "buffer.consumer"],
        env=buffer_env(settings),
        # 503 until the consumer is connected to the broker and consuming.
        health_url=settings.url("consumer") + "/healthz",
        port=settings.ports["consumer"],
    )


def router_spec(settings: StackSettings) -> ComponentSpec:
    """Build the router's spec: the buffer's own gunicorn settings (gevent workers, merged metrics)."""
    metrics_dir = settings.run_dir / "prometheus-router"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = {
        **buffer_env(settings),
        "ROUTER_BIND": f"{settings.host}:{settings.ports['router']}",
        "ROUTER_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    graceful_timeout = router_graceful_timeout()
    env["ROUTER_GRACEFUL_TIMEOUT"] = str(graceful_timeout)
    config_file = str(REPO_ROOT / "buffer" / "gunicorn_router.py")
    return ComponentSpec(
        name="router",
        argv=[
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            config_file,
            "--no-control-socket",
            "buffer.router:create_app()",
        ],
        env=env,
        health_url=settings.url("router") + "/healthz",
        port=settings.ports["router"],
        stop_grace=graceful_timeout + ROUTER_STOP_MARGIN,
    )


def router_graceful_timeout() -> int:
    """Return the router's graceful timeout in whole seconds, as `buffer/gunicorn_router.py` computes it.

    It is ROUTER_GRACEFUL_TIMEOUT when the caller's environment sets it, else
    REQUEST_TIMEOUT + 2 s, because every request ends by its deadline.
    """
    values = {}
    for variable, default in (
        ("REQUEST_TIMEOUT", BufferConfig.request_timeout),
        ("ROUTER_GRACEFUL_TIMEOUT", None),
    ):
        raw = os.environ.get(variable, "").strip()
        try:
            values[variable] = float(raw) if raw else default
        except ValueError:
            raise StartError(
                f"{variable}={raw!r} is invalid: set it to a number of seconds, or unset it"
            ) from None
    graceful = values["ROUTER_GRACEFUL_TIMEOUT"]
    if graceful is None:
        graceful = values["REQUEST_TIMEOUT"] + 2
    if not 0 <= graceful < float("inf"):
        raise StartError(
            f"router graceful timeout {graceful} s is invalid: "
            "check REQUEST_TIMEOUT and ROUTER_GRACEFUL_TIMEOUT"
        )
    return math.ceil(graceful)


def stack_specs(settings: StackSettings) -> list[ComponentSpec]:
    """Return every component's spec in start order, each one after its dependencies."""
    return [
        engine_spec(settings),
        hooks_spec(settings),
        *(carbonstat_spec(settings, flavour) for flavour in FLAVOUR_NAMES),
        consumer_spec(settings),
        router_spec(settings),
    ]
