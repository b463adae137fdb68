"""Options of the local stack: ports, trace replay, schedule, from flags and environment.

Every option has a fixed default so `make run` prints the same URLs each
time. Each can be overridden by an environment variable (`DEVSTACK_*`) or a
command-line flag. `--free-ports` requests unused ports from the kernel
instead, which is what the end-to-end test does. With `--free-ports` the namespace,
which prefixes the stack's queue names on the shared broker, defaults to
`devstack-<router port>`, so such stacks never consume each other's queues.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PORTS = {
    "router": 8000,
    "engine": 8080,
    "hooks": 8081,
    "consumer": 8090,  # the consumer's metrics and health port
    "carbonstat-high": 8101,
    "carbonstat-mid": 8102,
    "carbonstat-low": 8103,
}

FLAVOUR_NAMES = ("high", "mid", "low")

# A Kubernetes object name (RFC 1123 label), valid in queue names too.
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class SettingsError(ValueError):
    """An option has an invalid value; the message names the option and the value."""


@dataclass(frozen=True)
class StackSettings:
    """Everything `run`, `demo` and `status` need to know about one local stack."""

    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # Trace replay: source seconds per wall-clock second. 120 plays one
    # half-hour slot every 15 s, so the mix visibly changes within minutes.
    speed_up: float = 120.0
    trace_actuals: str | None = None  # None: the engine's bundled GB trace
    trace_forecasts: str | None = None
    trace_start: str | None = None  # RFC 3339 source time the replay starts at
    namespace: str = "default"
    # True when devstack picked the namespace for this run, so it deletes its broker objects on stop.
    per_run_namespace: bool = False
    name: str = "carbonstat"
    policy: str | None = None  # overrides spec.scheduler.policy of the example schedule
    schedule_file: Path = REPO_ROOT / "examples" / "local" / "trafficschedule.yaml"
    flavours_file: Path = REPO_ROOT / "examples" / "local" / "carbonstat-flavours.yaml"
    register_via: str = "hooks"  # "hooks": through POST /sync; "engine": PUT /config directly
    resync_seconds: float = 30.0  # upper bound between two syncs
    status_interval: float = 5.0
    run_dir: Path = REPO_ROOT / "run"
    threads: int = 8
    start_timeout: float = 60.0

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "devstack.json"

    def url(self, component: str) -> str:
        return f"http://{self.host}:{self.ports[component]}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options shared by `run`, `demo` and `status` to a sub-command's parser."""
    # Defaults from the environment stay strings, so argparse converts them with `type` and
    # reports a malformed value as a usage error instead of a traceback.
    env = os.environ
    parser.add_argument(
        "--free-ports", action="store_true", help="pick unused loopback ports instead of the fixed defaults"
    )
    for component, default in DEFAULT_PORTS.items():
        variable = "DEVSTACK_" + component.upper().replace("-", "_") + "_PORT"
        parser.add_argument(
            f"--{component}-port",
            type=int,
            default=env.get(variable, default),
            help=f"TCP port of {component} on loopback (env {variable}, default {default})",
        )
    parser.add_argument(
        "--rabbitmq-url",
        default=env.get("RABBITMQ_URL", StackSettings.rabbitmq_url),
        help="AMQP URL of the broker (env RABBITMQ_URL)",
    )
    parser.add_argument(
        "--speed-up",
        type=float,
        default=env.get("DEVSTACK_SPEED_UP", StackSettings.speed_up),
        help="trace seconds replayed per wall-clock second (env DEVSTACK_SPEED_UP, default 120: "
        "one half-hour slot every 15 s)",
    )
    parser.add_argument(
        "--trace", default=env.get("DEVSTACK_TRACE"), help="actuals CSV to replay (env DEVSTACK_TRACE)"
    )
    parser.add_argument(
        "--trace-forecasts",
        default=env.get("DEVSTACK_TRACE_FORECASTS"),
        help="forecast snapshots CSV of that trace (env DEVSTACK_TRACE_FORECASTS)",
    )
    parser.add_argument(
        "--trace-start",
        default=env.get("DEVSTACK_TRACE_START"),
        help="trace time the replay starts at, RFC 3339 (env DEVSTACK_TRACE_START; default for the "
        "bundled trace 2023-03-25T12:00:00Z, the trace's first slot for a custom one)",
    )
    parser.add_argument(
        "--namespace",
        default=env.get("DEVSTACK_NAMESPACE"),
        help="namespace of the local schedule; it prefixes the stack's queue names on the broker, so two "
        "stacks sharing a broker need different ones (env DEVSTACK_NAMESPACE, default `default`, or "
        "`devstack-<router port>` with --free-ports)",
    )
    parser.add_argument(
        "--name",
        default=env.get("DEVSTACK_NAME", StackSettings.name),
        help="name of the local schedule and its service (env DEVSTACK_NAME, default carbonstat)",
    )
    parser.add_argument(
        "--policy", default=env.get("DEVSTACK_POLICY"), help="override the example schedule's policy"
    )
    parser.add_argument(
        "--register-via",
        choices=("hooks", "engine"),
        default=env.get("DEVSTACK_REGISTER_VIA", StackSettings.register_via),
        help="register the schedule through the hooks' /sync (default) or PUT /config on the engine",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(env.get("DEVSTACK_RUN_DIR", StackSettings.run_dir)),
        help="folder for logs and the state file (env DEVSTACK_RUN_DIR, default run/)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=StackSettings.status_interval,
        help="seconds between status lines",
    )


def settings_from_args(args: argparse.Namespace) -> StackSettings:
    """Build and check the settings from parsed arguments."""
    ports = {component: getattr(args, component.replace("-", "_") + "_port") for component in DEFAULT_PORTS}
    if args.free_ports:
        ports = free_ports(list(DEFAULT_PORTS))
    settings = StackSettings(
        ports=ports,
        rabbitmq_url=args.rabbitmq_url,
        speed_up=args.speed_up,
        trace_actuals=args.trace,
        trace_forecasts=args.trace_forecasts,
        trace_start=args.trace_start,
        namespace=args.namespace or default_namespace(ports, free=args.free_ports),
        per_run_namespace=args.free_ports and not args.namespace,
        name=args.name,
        policy=args.policy,
        register_via=args.register_via,
        run_dir=args.run_dir.resolve(),
        status_interval=args.status_interval,
    )
    check(settings)
    return settings


def default_namespace(ports: dict[str, int], *, free: bool) -> str:
    """Return the namespace used when none is given: one per run with free ports, else `default`.

    The namespace prefixes the queue names, so stacks started with
    --free-ports on one broker never consume each other's queues.
    """
    if free:
        return f"devstack-{ports['router']}"
    return StackSettings.namespace


def check(settings: StackSettings) -> None:
    """Raise SettingsError on a value the stack cannot run with."""
    if not settings.speed_up > 0:
        raise SettingsError(f"--speed-up must be > 0, got {settings.speed_up}")
    for component, port in settings.ports.items():
        if not 0 < port < 65536:
            raise SettingsError(f"--{component}-port must be 1-65535, got {port}")
    if len(set(settings.ports.values())) != len(settings.ports):
        raise SettingsError(f"two components share a port: {settings.ports}")
    for path in (settings.trace_actuals, settings.trace_forecasts):
        if path and not Path(path).is_file():
            raise SettingsError(f"trace file not found: {path}")
    for option, value in (("--namespace", settings.namespace), ("--name", settings.name)):
        if not NAME_PATTERN.fullmatch(value):
            raise SettingsError(
                f"{option} must be lowercase letters, digits and '-', at most 63 characters, "
                f"starting and ending with a letter or digit; got {value!r}"
            )
    for path in (settings.schedule_file, settings.flavours_file):
        if not path.is_file():
            raise SettingsError(f"example file not found: {path}")


def free_ports(components: list[str]) -> dict[str, int]:
    """Ask the kernel for one unused loopback port per component.

    NOTE: a port is free when chosen and may be taken by another program
    before the component binds it; start-up then fails with "address in use".
    """
    sockets = []
    try:
        for _ in components:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return {component: sock.getsockname()[1] for component, sock in zip(components, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()


def port_in_use(host: str, port: int) -> bool:
    """Return True when something already accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
