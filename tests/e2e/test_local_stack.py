"""End-to-end: the local stack routes real requests by the engine's weights and follows carbon.

The test starts `python -m devstack run` on free ports with a small trace
(clean slots, then dirty slots) replayed 600 times faster than real time, so
one half-hour slot lasts 3 s. The schedule gets its own namespace, so its
queues on the shared broker are unique and are deleted at the end. Through
the router it sends a batch of requests in a clean slot and one in a dirty
slot and checks:

- every response contains the correct average for the flavour that served it;
- the flavour counts fit the engine's weights (chi-square goodness of fit);
- the dirty slot gets less `high` than the clean one, in the engine's
  weights and in the observed traffic (two-proportion z-test).

A batch only counts when the engine's weights were the same just before and
just after it, so a decision that changes mid-batch cannot fail the fit.
Every feedback post of served counts moves the credit ledger and with it the
weights, and a batch in a dirty slot spends credit. So the consumer's
feedback interval is set longer than the test, and the clean and dirty
decisions differ by the carbon signal alone. The feedback loop has its own
tests with the buffer and the engine.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pika
import pytest
import requests
from scipy import stats

from carbonstat.flavours import FLAVOURS, average, flavour_named

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACE = Path(__file__).parent / "data" / "clean-then-dirty-actual.csv"
SPEED_UP = 600  # one half-hour slot every 3 s
BATCH = 400  # per slot; the high shares then differ by about 7 standard errors
CLIENTS = 8
SIGNIFICANCE = 1e-4  # chance of failing a fit although the router follows the weights
ROUTER_LAG = 2.5  # seconds to wait after a new decision before sending a batch
CLEAN_BELOW = 100.0
DIRTY_ABOVE = 200.0
# Longer than the whole test, so the consumer posts no feedback while batches run (see the module doc).
FEEDBACK_INTERVAL = 600
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


class Stack:
    """A `devstack run` subprocess and the URLs it recorded."""

    def __init__(self, run_dir: Path, namespace: str, *, extra_args: tuple[str, ...] = ()):
        self.run_dir = run_dir
        self.namespace = namespace
        self.output = (run_dir / "devstack.out").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack",
                "run",
                "--free-ports",
                "--run-dir",
                str(run_dir),
                "--speed-up",
                str(SPEED_UP),
                "--trace",
                str(TRACE),
                "--namespace",
                namespace,
                "--status-interval",
                "1",
                *extra_args,
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "FEEDBACK_INTERVAL_SECONDS": str(FEEDBACK_INTERVAL)},
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        try:
            self.state = self.wait_ready(timeout=90)
        except BaseException:
            # A stack that never became ready still has processes to stop.
            self.stop()
            raise
        self.urls = self.state["urls"]
        self.key = self.state["schedule"]

    def wait_ready(self, *, timeout: float) -> dict:
        state_file = self.run_dir / "devstack.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"devstack exited with {self.process.returncode}:\n{self.tail()}")
            if state_file.exists():
                return json.loads(state_file.read_text())
            time.sleep(0.2)
        pytest.fail(f"devstack was not ready after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        if not self.output.closed:
            self.output.flush()
        text = (self.run_dir / "devstack.out").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def decision(self) -> dict:
        response = requests.get(f"{self.urls['engine']}/schedule/{self.key}", timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # The components die with devstack (parent-death signal), so SIGKILL leaves no orphan.
                self.process.kill()
                self.process.wait()
        self.output.close()


def delete_broker_objects(namespace: str, service: str = "carbonstat") -> None:
    """Delete the queues and exchanges this test's schedule declared on the shared broker."""
    exchange = f"{namespace}.{service}"
    queues = [f"{exchange}.queue.precision-{f.precision}" for f in FLAVOURS.values()]
    queues.append(f"{exchange}.queue.dead-letter")
    try:
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    except pika.exceptions.AMQPError:
        return
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
        for name in (exchange, f"{exchange}.dlx"):
            channel.exchange_delete(name)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    running = Stack(tmp_path_factory.mktemp("devstack"), namespace)
    try:
        yield running
    finally:
        ports = running.state["ports"].values()
        running.stop()
        delete_broker_objects(namespace)
        assert running.process.returncode == 0, running.tail()
        # Every component is gone: none of the stack's ports still accepts connections.
        still_open = [port for port in ports if port_open(port)]
        assert still_open == [], f"ports still open after stop: {still_open}"


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def random_numbers(rng: random.Random) -> list[float | int]:
    count = rng.randint(1, 40)
    return [rng.choice([rng.randint(-1000, 1000), round(rng.uniform(-1e3, 1e3), 3)]) for _ in range(count)]


def send_checked(session: requests.Session, router: str, numbers: list) -> str:
    """Send one request and return the flavour that served it, after checking its response."""
    response = session.post(f"{router}/avg", json={"numbers": numbers}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    flavour = flavour_named(body["flavour"])
    assert body["precision"] == flavour.precision
    expected = average([float(n) for n in numbers], flavour)
    assert math.isclose(body["avg"], expected, rel_tol=1e-12, abs_tol=1e-9), (numbers, body)
    return flavour.name


def send_batch(router: str, batches: list[list]) -> list[str]:
    """Send every request from CLIENTS threads, one HTTP session per thread."""
    local = threading.local()

    def send(numbers: list) -> str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return send_checked(local.session, router, numbers)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return list(pool.map(send, batches))


def wait_for_intensity(stack: Stack, accept, *, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        decision = stack.decision()
        if accept(decision["carbon"]["now"]):
            return decision
        time.sleep(0.2)
    pytest.fail(f"the replay did not reach the expected intensity within {timeout} s:\n{stack.tail()}")


def measured_batch(stack: Stack, accept, *, seed: int) -> tuple[dict[str, int], dict[str, int]]:
    """Send one batch while the weights stay unchanged, and return (observed counts, engine weights)."""
    rng = random.Random(seed)
    for _attempt in range(4):
        before = wait_for_intensity(stack, accept, timeout=40)
        # The router refreshes at the decision's validUntil but waits at least 1 s between
        # fetches, so it may use the previous decision for about a second after a change.
        time.sleep(ROUTER_LAG)
        batches = [random_numbers(rng) for _ in range(BATCH)]
        flavours = send_batch(stack.urls["router"], batches)
        after = stack.decision()
        if after["flavourWeights"] == before["flavourWeights"] and accept(after["carbon"]["now"]):
            counts = {name: flavours.count(name) for name in before["flavourWeights"]}
            assert sum(counts.values()) == BATCH, f"responses from unknown flavours: {set(flavours)}"
            print(
                f"decision: credits {before['credits']} carbon now {before['carbon']['now']} "
                f"next {before['carbon'].get('next')} diagnostics {before.get('diagnostics')}"
            )
            return counts, before["flavourWeights"]
    pytest.fail("the engine's weights changed during every attempt; no batch could be measured")


def assert_fits_weights(counts: dict[str, int], weights: dict[str, int], label: str) -> None:
    names = [name for name in weights if weights[name] > 0]
    for name in weights:
        if weights[name] == 0:
            assert counts[name] == 0, f"{label}: {name} has weight 0 but served {counts[name]} requests"
    observed = [counts[name] for name in names]
    expected = [BATCH * weights[name] / 100.0 for name in names]
    result = stats.chisquare(observed, expected)
    assert result.pvalue > SIGNIFICANCE, (
        f"{label}: counts {counts} do not fit weights {weights} (p={result.pvalue:.2g})"
    )


def test_stack_routes_by_weights_and_follows_carbon(stack):
    clean_counts, clean_weights = measured_batch(stack, lambda intensity: intensity < CLEAN_BELOW, seed=1)
    dirty_counts, dirty_weights = measured_batch(stack, lambda intensity: intensity > DIRTY_ABOVE, seed=2)

    assert_fits_weights(clean_counts, clean_weights, "clean slot")
    assert_fits_weights(dirty_counts, dirty_weights, "dirty slot")

    # The engine moves weight away from high when the grid is dirty ...
    assert dirty_weights["high"] < clean_weights["high"], (clean_weights, dirty_weights)
    # ... and the traffic follows: fewer requests reach high, beyond chance (one-sided z > 3).
    clean_share = clean_counts["high"] / BATCH
    dirty_share = dirty_counts["high"] / BATCH
    pooled = (clean_counts["high"] + dirty_counts["high"]) / (2 * BATCH)
    z = (clean_share - dirty_share) / math.sqrt(pooled * (1 - pooled) * 2 / BATCH)
    print(f"clean: weights {clean_weights} counts {clean_counts}")
    print(f"dirty: weights {dirty_weights} counts {dirty_counts}")
    assert z > 3, f"high share clean {clean_share:.2f} vs dirty {dirty_share:.2f} (z={z:.2f})"


def test_router_relays_invalid_input_error(stack):
    response = requests.post(f"{stack.urls['router']}/avg", json={"numbers": []}, timeout=30)
    assert response.status_code == 400
    assert "empty" in response.json()["error"]


def test_every_component_reports_healthy(stack):
    for name, url in stack.urls.items():
        assert requests.get(url + "/healthz", timeout=5).status_code == 200, name


def test_sync_hook_result_is_written(stack):
    # The stack registered through the real hooks: their rendered children and status are on disk.
    import yaml

    children = list(yaml.safe_load_all((stack.run_dir / "children.yaml").read_text()))
    kinds = {child["kind"] for child in children}
    assert {"Deployment", "Service", "ScaledObject", "DestinationRule", "VirtualService"} <= kinds
    status = yaml.safe_load((stack.run_dir / "status.yaml").read_text())
    conditions = {condition["type"]: condition["status"] for condition in status["conditions"]}
    assert conditions["Ready"] == "True"
    assert conditions["EngineReachable"] == "True"
    assert {flavour["precision"] for flavour in status["flavours"]} == {100, 50, 25}


def test_demo_reports_running_stack(stack, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "demo",
            "--run-dir",
            str(stack.run_dir),
            "--minutes",
            "0.2",
            "--interval",
            "4",
            "--rate",
            "20",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo: using the running stack" in result.stdout
    assert " 0 failed" in result.stdout

    csv_files = list(tmp_path.glob("demo-*.csv"))
    png_files = list(tmp_path.glob("demo-*.png"))
    assert len(csv_files) == 1
    assert len(png_files) == 1
    lines = csv_files[0].read_text().splitlines()
    # Header, three 4 s intervals of a 12 s demo, and the total row.
    assert len(lines) == 5
    total = dict(zip(lines[0].split(","), lines[-1].split(","), strict=True))
    assert total["interval"] == "all"
    assert int(total["requests"]) >= 200
    assert int(total["errors"]) == 0


def test_stack_stops_when_a_component_dies(tmp_path):
    # This stack registers with PUT /config directly, the path that skips the hooks.
    crashing = Stack(tmp_path, f"e2e-{uuid.uuid4().hex[:8]}", extra_args=("--register-via", "engine"))
    try:
        ports = crashing.state["ports"].values()
        assert crashing.decision()["flavourWeights"]["high"] > 0
        os.killpg(crashing.state["pids"]["carbonstat-mid"], signal.SIGKILL)
        code = crashing.process.wait(timeout=60)
    finally:
        crashing.stop()
        delete_broker_objects(crashing.namespace)
    assert code == 1
    assert "carbonstat-mid exited with code" in crashing.tail()
    assert [port for port in ports if port_open(port)] == []


def test_rejected_registration_stops_stack(tmp_path):
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "run",
            "--free-ports",
            "--run-dir",
            str(tmp_path),
            "--namespace",
            namespace,
            "--register-via",
            "engine",
            "--policy",
            "no-such-policy",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"registering {namespace}/carbonstat failed 3 times" in result.stderr
    assert "returned 400" in result.stderr
    assert "no-such-policy" in result.stderr
    assert "devstack: stopped" in result.stderr
    # The stack never announced itself as running, and the router never started.
    assert not (tmp_path / "devstack.json").exists()
    assert not (tmp_path / "logs" / "router.log").exists()
