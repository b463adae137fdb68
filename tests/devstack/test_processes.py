"""Supervisor: start components in their own process groups, report failures, stop without orphans."""

import os
import sys
import time

import pytest

from devstack.components import carbonstat_spec, router_spec
from devstack.processes import ComponentSpec, StartError, Supervisor
from devstack.settings import StackSettings, free_ports


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # kill(0) succeeds on a zombie too, so the state field in /proc decides.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # Fields after the command: state, ppid, pgrp.
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def test_carbonstat_under_gunicorn_starts_and_stops(tmp_path):
    ports = free_ports(["carbonstat-high"])
    settings = StackSettings(ports=ports, run_dir=tmp_path)
    supervisor = Supervisor(log_dir=tmp_path / "logs")
    process = supervisor.start(carbonstat_spec(settings, "high"))
    try:
        supervisor.wait_healthy("carbonstat-high", timeout=30)
        assert supervisor.health() == {"carbonstat-high": "ok"}
        # gunicorn master plus its worker share the group the supervisor created.
        assert len(group_members(process.pid)) >= 2
    finally:
        supervisor.stop_all(grace=5)
    deadline = time.monotonic() + 5
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(process.pid) == []
    assert supervisor.running == {}
    assert (tmp_path / "logs" / "carbonstat-high.log").read_text().count("devstack start") == 1


def test_component_exiting_at_start_raises_with_log(tmp_path):
    supervisor = Supervisor(log_dir=tmp_path)
    spec = ComponentSpec(
        name="broken",
        argv=[sys.executable, "-c", "import sys; print('config invalid: FLAVOURS is empty'); sys.exit(3)"],
        health_url="http://127.0.0.1:9/healthz",
    )
    supervisor.start(spec)
    try:
        with pytest.raises(StartError) as info:
            supervisor.wait_healthy("broken", timeout=10)
    finally:
        supervisor.stop_all(grace=1)
    assert "broken exited with code 3" in str(info.value)
    assert "config invalid: FLAVOURS is empty" in str(info.value)


def test_component_never_healthy_times_out(tmp_path):
    supervisor = Supervisor(log_dir=tmp_path)
    spec = ComponentSpec(
        name="silent",
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        health_url="http://127.0.0.1:9/healthz",
    )
    process = supervisor.start(spec)
    try:
        with pytest.raises(StartError, match="silent did not return 200"):
            supervisor.wait_healthy("silent", timeout=1)
    finally:
        supervisor.stop_all(grace=1)
    assert not pid_alive(process.pid)


def test_process_ignoring_sigterm_is_killed(tmp_path):
    supervisor = Supervisor(log_dir=tmp_path)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    process = supervisor.start(ComponentSpec(name="stubborn", argv=[sys.executable, "-c", code]))
    time.sleep(0.5)
    started = time.monotonic()
    supervisor.stop_all(grace=1)
    assert time.monotonic() - started < 5
    assert not pid_alive(process.pid)


def test_children_die_with_killed_parent(tmp_path):
    # A parent that starts a component and is then SIGKILLed must not leave the component running.
    script = f"""
import sys, time
sys.path.insert(0, {str(os.getcwd())!r})
from pathlib import Path
from devstack.processes import ComponentSpec, Supervisor
supervisor = Supervisor(log_dir=Path({str(tmp_path)!r}))
sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
process = supervisor.start(ComponentSpec(name="child", argv=sleeper))
print(process.pid, flush=True)
time.sleep(60)
"""
    import signal
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert pid_alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while pid_alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(child_pid)


def test_stop_waits_for_component_grace(tmp_path):
    # The component takes 2 s to drain after SIGTERM, longer than the default grace but within its own.
    supervisor = Supervisor(log_dir=tmp_path)
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(2), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    spec = ComponentSpec(name="draining", argv=[sys.executable, "-c", code], stop_grace=5)
    process = supervisor.start(spec)
    deadline = time.monotonic() + 5
    while "ready" not in supervisor.log_tail("draining") and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    supervisor.stop_all(grace=1)
    assert process.returncode == 0
    assert 1.5 < time.monotonic() - started < 5


@pytest.mark.parametrize(("request_timeout", "graceful"), [(None, 32), ("5", 7), ("2.5", 5)])
def test_router_stop_grace_exceeds_graceful_timeout(monkeypatch, tmp_path, request_timeout, graceful):
    monkeypatch.delenv("ROUTER_GRACEFUL_TIMEOUT", raising=False)
    if request_timeout is None:
        monkeypatch.delenv("REQUEST_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("REQUEST_TIMEOUT", request_timeout)
    spec = router_spec(StackSettings(run_dir=tmp_path))
    assert spec.env["ROUTER_GRACEFUL_TIMEOUT"] == str(graceful)
    assert spec.stop_grace > graceful


def test_router_stop_grace_follows_given_graceful_timeout(monkeypatch, tmp_path):
    monkeypatch.setenv("ROUTER_GRACEFUL_TIMEOUT", "8")
    spec = router_spec(StackSettings(run_dir=tmp_path))
    assert spec.env["ROUTER_GRACEFUL_TIMEOUT"] == "8"
    assert 8 < spec.stop_grace <= 12
