"""The `run` command: start every component, register the schedule, report, stop cleanly.

Order matters. The engine must be up before the hooks can request a
decision from it, and the flavours before the consumer forwards to them.
The first sync must be done before the router starts, or it would route on
its all-`high` fallback. So components start one by one, each waiting for
its health check. Any failure stops everything already started and names
the component and its log. Ctrl-C (SIGINT) and SIGTERM stop the router
first, waiting up to its graceful timeout plus 3 s so in-flight requests get
a response, then every other process group.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

import pika.exceptions
import requests

from devstack.broker import consumed_flavour_queues, delete_broker_objects
from devstack.components import missing_entry_points, stack_specs
from devstack.processes import StartError, Supervisor
from devstack.registration import Registrar, RegistrationError
from devstack.settings import StackSettings, port_in_use
from devstack.status import fetch_decision, status_line

log = logging.getLogger("devstack")

# Components that read the engine's decision for routing, so they start after the first sync.
BUFFER_COMPONENTS = ("consumer", "router")


class Interrupted(Exception):
    """Signal to stop the stack, raised when SIGINT or SIGTERM arrives."""


class PreflightError(RuntimeError):
    """Prerequisite found missing before any process starts. The message gives the fix."""


def broker_answers(url: str, *, timeout: float = 2.0) -> bool:
    """Return True when something accepts TCP connections at the AMQP URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=timeout):
            return True
    except OSError:
        return False


def queue_problems(settings: StackSettings) -> list[str]:
    """Describe every flavour queue another consumer already serves, or why the check failed.

    Two stacks consuming one queue take each other's requests and post each
    other's served counts, which corrupts both credit ledgers.

    NOTE: two stacks started at nearly the same time can both pass this check,
    because a queue gets its consumer only when the stack's consumer starts,
    several seconds after the check.
    """
    try:
        consumed = consumed_flavour_queues(settings)
    except (pika.exceptions.AMQPError, OSError) as exc:
        return [f"checking the flavour queues on the broker failed: {exc!r}; check RABBITMQ_URL"]
    if not consumed:
        return []
    queues = ", ".join(
        f"{queue} ({count} consumer{'' if count == 1 else 's'})" for queue, count in consumed.items()
    )
    return [
        f"flavour queues already have consumers: {queues}. Another stack or consumer serves "
        f"{settings.namespace}/{settings.name} on this broker, and the two would take each other's "
        "requests and corrupt each other's credit ledgers. Stop it, or give this stack its own queues "
        "with --namespace NAME (--free-ports picks a namespace per run unless you give one)"
    ]


def preflight(settings: StackSettings) -> None:
    """Check entry points, the broker, the flavour queues and the ports.

    Raise PreflightError naming every problem found.
    """
    problems = []
    missing = missing_entry_points()
    if missing:
        problems.append(
            "these parts are not in this checkout yet, so the stack cannot run: " + "; ".join(missing)
        )
    if not broker_answers(settings.rabbitmq_url):
        problems.append(
            f"no RabbitMQ answers at {urlsplit(settings.rabbitmq_url).netloc.split('@')[-1]}: run "
            "`make rabbitmq` (scripts/ensure-rabbitmq.sh) or set RABBITMQ_URL"
        )
    else:
        problems.extend(queue_problems(settings))
    for component, port in settings.ports.items():
        if port_in_use(settings.host, port):
            problems.append(
                f"port {port} ({component}) is already in use: stop what holds it, pass --{component}-port, "
                "or use --free-ports"
            )
    if problems:
        raise PreflightError("\n".join("  - " + problem for problem in problems))


def write_state(settings: StackSettings, supervisor: Supervisor) -> None:
    """Record ports, URLs and process ids so `status`, `demo` and tests can find this stack."""
    state = {
        "pid": os.getpid(),
        "pids": {name: process.pid for name, (_spec, process) in supervisor.running.items()},
        "schedule": f"{settings.namespace}/{settings.name}",
        "ports": settings.ports,
        "urls": {component: settings.url(component) for component in settings.ports},
        "speedUp": settings.speed_up,
        "logDir": str(settings.log_dir),
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    temporary = settings.state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.replace(settings.state_file)


def print_urls(settings: StackSettings) -> None:
    print("carbonrouter local stack is up:")
    for component in settings.ports:
        print(f"  {component:<16} {settings.url(component)}")
    print(f"  logs             {settings.log_dir}/<component>.log")
    print("try:")
    print(
        f"  curl -X POST {settings.url('router')}/avg -d '{{\"numbers\":[1,2,3,4]}}' "
        "-H 'content-type: application/json'"
    )
    print("stop with Ctrl-C")
    sys.stdout.flush()


def _raise_interrupted(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def run(settings: StackSettings) -> int:
    """Run the stack in the foreground until interrupted or until a component dies."""
    try:
        preflight(settings)
    except PreflightError as exc:
        print(f"devstack: cannot start the local stack:\n{exc}", file=sys.stderr)
        return 2

    # Components are started from this (main) thread, because their
    # parent-death signal is tied to the thread that forks them.
    assert threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(log_dir=settings.log_dir)
    registrar: Registrar | None = None
    code = 0
    try:
        registrar = start_stack(settings, supervisor)
        write_state(settings, supervisor)
        print_urls(settings)
        code = watch(settings, supervisor, registrar)
    except Interrupted as exc:
        print(f"\ndevstack: {exc} received, stopping", file=sys.stderr)
    except (StartError, RegistrationError, requests.RequestException) as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C while stopping must not leave processes behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if registrar:
            registrar.stop()
        announce_drain(supervisor)
        supervisor.stop_all()
        delete_per_run_queues(settings)
        settings.state_file.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("devstack: stopped", file=sys.stderr)
    return code


def delete_per_run_queues(settings: StackSettings) -> None:
    """Delete the stack's broker objects when devstack picked its namespace for this run.

    A namespace given by the user may be shared with other runs, so its
    queues stay. A failure here is printed and does not change the exit status.
    """
    if not settings.per_run_namespace:
        return
    try:
        deleted = delete_broker_objects(settings)
    except (pika.exceptions.AMQPError, OSError) as exc:
        print(f"devstack: deleting the queues of {settings.namespace} failed: {exc!r}", file=sys.stderr)
        return
    log.info("event=broker-objects-deleted namespace=%s count=%d", settings.namespace, len(deleted))


def announce_drain(supervisor: Supervisor) -> None:
    """Print how long stopping may take when a component gets time to finish its in-flight requests."""
    for name, (spec, _process) in supervisor.running.items():
        if spec.stop_grace is not None:
            print(
                f"devstack: {name} gets up to {spec.stop_grace:g} s to finish in-flight requests",
                file=sys.stderr,
                flush=True,
            )


def start_stack(settings: StackSettings, supervisor: Supervisor) -> Registrar:
    """Start the components in order, register the schedule, then start the resync loop.

    The schedule is registered before the consumer and router start, so their
    first fetch finds a decision and they never route on the fallback mix.
    """
    specs = stack_specs(settings)
    registrar = Registrar(settings)
    for spec in specs:
        if spec.name in BUFFER_COMPONENTS and registrar.syncs == 0:
            register_first(settings, registrar)
        print(f"devstack: starting {spec.name:<16} on {settings.host}:{spec.port}", flush=True)
        supervisor.start(spec)
        supervisor.wait_healthy(spec.name, timeout=settings.start_timeout)
    registrar.start()
    return registrar


def register_first(settings: StackSettings, registrar: Registrar) -> None:
    """Register the schedule once, retrying twice because the hooks and engine have only just started."""
    for attempt in range(3):
        try:
            registrar.sync_once()
            break
        except (RegistrationError, requests.RequestException) as exc:
            if attempt == 2:
                raise RegistrationError(f"registering {registrar.key} failed 3 times: {exc}") from None
            log.warning("event=register-retry schedule=%s error=%s", registrar.key, exc)
            time.sleep(1.0)
    via = "the hooks' /sync" if settings.register_via == "hooks" else "PUT /config on the engine"
    print(f"devstack: registered {registrar.key} through {via}", flush=True)


def watch(settings: StackSettings, supervisor: Supervisor, registrar: Registrar) -> int:
    """Print a status line every few seconds, and return 1 as soon as a component exits."""
    key = f"{settings.namespace}/{settings.name}"
    while True:
        exited = supervisor.exited()
        if exited:
            for name, code in exited.items():
                print(
                    f"devstack: {name} exited with code {code}; see {supervisor.log_path(name)}:\n"
                    + supervisor.log_tail(name),
                    file=sys.stderr,
                )
            return 1
        decision = fetch_decision(settings.url("engine"), key)
        line = status_line(decision, health=supervisor.health())
        if registrar.last_error:
            line += f"  SYNC FAILING: {registrar.last_error[:120]}"
        elif registrar.failing_condition():
            line += f"  NOT READY: {registrar.failing_condition()[:160]}"
        print(line, flush=True)
        time.sleep(settings.status_interval)
