"""Start, watch and stop the local stack's processes.

Each component runs in its own session (so its own process group): gunicorn
masters and their workers stop together with one `killpg`. On Linux every
child also gets `PR_SET_PDEATHSIG`, so it receives SIGTERM if the devstack
process dies without cleaning up (killed with SIGKILL, for example), and no
orphan keeps a port. Output of each component goes to `<log_dir>/<name>.log`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

log = logging.getLogger("devstack")

PR_SET_PDEATHSIG = 1


@dataclass
class ComponentSpec:
    """How to start one component and how to tell that it is healthy."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None  # None: the component is healthy while its process lives
    port: int | None = None
    # Seconds the component may take to finish in-flight work after SIGTERM before it gets
    # SIGKILL. A component that sets it stops before the others, which may serve that work.
    stop_grace: float | None = None


class StartError(RuntimeError):
    """A component did not start or did not become healthy; the message names it and its log."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. The signal fires when the thread
    # that forked exits, so components must be started from the main thread.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class Supervisor:
    """The set of running components, started in order and stopped in reverse order."""

    def __init__(self, *, log_dir: Path, base_env: dict[str, str] | None = None):
        self.log_dir = log_dir
        self.base_env = dict(base_env if base_env is not None else os.environ)
        self.running: dict[str, tuple[ComponentSpec, subprocess.Popen]] = {}

    def start(self, spec: ComponentSpec) -> subprocess.Popen:
        """Start one component with its output appended to its log file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(spec.name)
        env = {**self.base_env, **spec.env}
        with open(log_path, "ab") as output:
            output.write(f"\n=== devstack start {time.strftime('%Y-%m-%dT%H:%M:%S')} {spec.name}\n".encode())
            output.flush()
            process = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        self.running[spec.name] = (spec, process)
        log.info("event=start component=%s pid=%d log=%s", spec.name, process.pid, log_path)
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def wait_healthy(self, name: str, *, timeout: float) -> None:
        """Wait until the component's health URL returns 200; raise StartError if it exits or times out."""
        spec, process = self.running[name]
        deadline = time.monotonic() + timeout
        while True:
            code = process.poll()
            if code is not None:
                raise StartError(
                    f"{name} exited with code {code} during start-up; see {self.log_path(name)}:\n"
                    + self.log_tail(name)
                )
            if spec.health_url is None or probe(spec.health_url):
                return
            if time.monotonic() > deadline:
                raise StartError(
                    f"{name} did not return 200 at {spec.health_url} within {timeout:.0f} s; "
                    f"see {self.log_path(name)}:\n" + self.log_tail(name)
                )
            time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def exited(self) -> dict[str, int]:
        """Return the components whose process has ended, with their exit codes."""
        return {
            name: process.returncode
            for name, (_spec, process) in self.running.items()
            if process.poll() is not None
        }

    def health(self) -> dict[str, str]:
        """Probe every component once: `ok`, `down` (no 200) or `exited <code>`."""
        states = {}
        for name, (spec, process) in self.running.items():
            code = process.poll()
            if code is not None:
                states[name] = f"exited {code}"
            elif spec.health_url is None or probe(spec.health_url):
                states[name] = "ok"
            else:
                states[name] = "down"
        return states

    def stop_all(self, *, grace: float = 10.0) -> None:
        """Stop every component and forget it.

        Components with their own `stop_grace` (the router) stop first, newest
        first, and get that long, because their in-flight requests need the
        rest of the stack to get a response. Then every other process group gets
        SIGTERM at once and SIGKILL what is left after `grace` seconds.
        """
        draining = [name for name, (spec, _process) in self.running.items() if spec.stop_grace is not None]
        for name in reversed(draining):
            self._stop_group([name], grace=self.running[name][0].stop_grace)
        self._stop_group([name for name in self.running if name not in draining], grace=grace)
        self.running.clear()

    def _stop_group(self, names: list[str], *, grace: float) -> None:
        """Send SIGTERM to the named components, newest first, and SIGKILL what is left after `grace` s."""
        for name in reversed(names):
            _spec, process = self.running[name]
            _signal_group(process, signal.SIGTERM)

        deadline = time.monotonic() + grace
        for name in reversed(names):
            _spec, process = self.running[name]
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("event=kill component=%s pid=%d reason=no-exit-after-sigterm", name, process.pid)
            # Workers may outlive their master, so the whole group gets SIGKILL either way.
            _signal_group(process, signal.SIGKILL)
            process.wait()
            log.info("event=stop component=%s pid=%d code=%s", name, process.pid, process.returncode)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        log.warning("event=signal-failed pid=%d signal=%d error=%s", process.pid, signum, exc)


def probe(url: str, *, timeout: float = 1.0) -> bool:
    """Return True when `url` returns 200 within `timeout` seconds."""
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False
