"""Failures from the field: broker outage, a killed consumer, slow flavours, many threads."""

from __future__ import annotations

import base64
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import requests
from prometheus_client import REGISTRY

from tests.buffer.conftest import start_consumer
from tests.buffer.helpers import RABBITMQ_URL, config_env, decision, free_port, wait_for
from tests.buffer.tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def broker_proxy():
    proxy = TcpProxy(("127.0.0.1", 5672))
    yield proxy
    proxy.cut()


def spawn_consumer(config, log_path, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "buffer.consumer"],
        cwd=REPO_ROOT,
        env=config_env(config, **env),
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )


def test_broker_outage_fails_fast_then_recovers(make_stack, engine, broker_proxy):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    url = RABBITMQ_URL.replace("127.0.0.1:5672", broker_proxy.address)
    stack = make_stack(rabbitmq_url=url, request_timeout=2.0, forward_timeout=1.5)
    assert stack.consumer.ready.wait(timeout=5)
    results: list[tuple[float, int, float]] = []  # (start time, status, elapsed)
    stop = threading.Event()

    def client_loop():
        client = stack.app.test_client()
        while not stop.is_set():
            started = time.monotonic()
            status = client.get("/slow?seconds=0.05").status_code
            results.append((started, status, time.monotonic() - started))

    threads = [threading.Thread(target=client_loop) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    cut_started = time.monotonic()
    broker_proxy.cut()
    # Taken after cut() returns: under load the cut itself can take longer than the margin below.
    cut_at = time.monotonic()
    time.sleep(2.0)
    restored_at = time.monotonic()
    broker_proxy.restore()
    recovered = wait_for(
        lambda: any(start > restored_at and status == 200 for start, status, _ in list(results)),
        timeout=15,
    )
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)

    assert recovered, "no request succeeded after the broker came back"
    assert all(not thread.is_alive() for thread in threads), "a request hung"
    assert {status for _, status, _ in results} <= {200, 503, 504}
    assert max(elapsed for _, _, elapsed in results) < 2.0 + 0.5
    during = [status for start, status, _ in results if cut_at + 0.1 < start < restored_at - 0.2]
    assert during and set(during) <= {503, 504}
    before = [status for start, status, _ in results if start < cut_started - 0.2]
    assert before and set(before) == {200}


def test_killed_consumer_message_redelivered(make_stack, engine, flavour_loads, tmp_path):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(consumer=False, request_timeout=15.0, forward_timeout=10.0)
    first = spawn_consumer(stack.config, tmp_path / "consumer1.log")
    replacement = None
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: stack.client.get("/slow?seconds=1.5"))
            assert wait_for(lambda: flavour_loads["high"].slow_hits == 1, timeout=10)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=5)
            replacement = spawn_consumer(stack.config, tmp_path / "consumer2.log")
            reply = pending.result(timeout=20)
    finally:
        for process in (first, replacement):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)

    assert reply.status_code == 200
    assert reply.get_json()["flavour"] == "high"
    assert flavour_loads["high"].slow_hits == 2  # the killed consumer's call, then the redelivery
    # Run with `python -m`, the consumer's own lines still name its module.
    assert " buffer.consumer event=consumer_stopped" in (tmp_path / "consumer2.log").read_text()


def test_slow_flavour_outlives_short_heartbeat(make_stack, engine, flavour_loads, caplog):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    caplog.set_level(logging.INFO, logger="buffer")
    stack = make_stack(heartbeat=1, request_timeout=10.0, forward_timeout=8.0)

    reply = stack.client.get("/slow?seconds=4")  # four heartbeat intervals

    assert reply.status_code == 200
    assert reply.get_json()["slept"] == 4
    assert flavour_loads["high"].slow_hits == 1
    lost = [r.getMessage() for r in caplog.records if "event=broker_connection_lost" in r.getMessage()]
    assert lost == []


@pytest.fixture(params=["gevent_pywsgi", "gthread"])
def gunicorn_router(request, make_stack, engine, tmp_path):
    """The router under gunicorn with 2 workers (8 threads each under gthread), and a consumer thread."""
    engine.decision = decision({"high": 40, "mid": 30, "low": 30})
    stack = make_stack(consumer=False, request_timeout=10.0, forward_timeout=8.0, prefetch=32)
    consumer, thread = start_consumer(stack.config)

    port = free_port()
    env = config_env(
        stack.config,
        ROUTER_BIND=f"127.0.0.1:{port}",
        ROUTER_WORKERS="2",
        ROUTER_THREADS="8",
        ROUTER_WORKER_CLASS=request.param,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "buffer/gunicorn_router.py",
            "buffer.router:create_app()",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=open(tmp_path / "gunicorn.log", "ab"),
        stderr=subprocess.STDOUT,
    )

    base = f"http://127.0.0.1:{port}"
    ready = wait_for(lambda: _answers(f"{base}/healthz"), timeout=15)
    yield base, ready, tmp_path / "gunicorn.log"

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)
    consumer.stop()
    thread.join(timeout=15)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_gunicorn_concurrent_requests_get_own_replies(gunicorn_router):
    base, ready, log_path = gunicorn_router
    assert ready, "gunicorn router did not start"

    def call(i: int):
        reply = requests.post(f"{base}/item/{i}?n={i}", data=f"body-{i}".encode(), timeout=15)
        return i, reply

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(call, range(50)))

    statuses = [reply.status_code for _, reply in outcomes]
    assert set(statuses) <= {200, 503, 504}
    assert statuses.count(200) >= 45
    for i, reply in outcomes:
        if reply.status_code == 200:
            echoed = reply.json()
            assert echoed["path"] == f"/item/{i}"
            assert echoed["query"] == f"n={i}"
            assert echoed["body"] == base64.b64encode(f"body-{i}".encode()).decode()

    # Both workers' counts are merged through PROMETHEUS_MULTIPROC_DIR.
    metrics_text = requests.get(f"{base}/metrics", timeout=5).text
    ingress = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("router_ingress_http_requests_total{")
    ]
    assert sum(ingress) == 50
    router_log = log_path.read_text()
    assert "Traceback" not in router_log
    assert "StreamLost" not in router_log
    assert "event=broker_unavailable" not in router_log


def test_sigterm_finishes_inflight_request(make_stack, engine, flavour_loads, tmp_path):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(consumer=False, request_timeout=10.0, forward_timeout=8.0)
    metrics_port = free_port()
    consumer = spawn_consumer(
        stack.config, tmp_path / "consumer.log", CONSUMER_METRICS_PORT=str(metrics_port)
    )
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: stack.client.get("/slow?seconds=1"))
            assert wait_for(lambda: flavour_loads["high"].slow_hits == 1, timeout=10)
            inflight = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            consumer.send_signal(signal.SIGTERM)
            reply = pending.result(timeout=15)
        exit_code = consumer.wait(timeout=10)
    finally:
        if consumer.poll() is None:
            consumer.kill()

    assert reply.status_code == 200
    assert exit_code == 0
    assert flavour_loads["high"].slow_hits == 1
    assert "consumer_inflight_requests 1.0" in inflight
    assert "event=consumer_stopped" in (tmp_path / "consumer.log").read_text()


def test_dropped_consumer_connection_yields_one_reply(make_stack, engine, flavour_loads, broker_proxy):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    proxied = RABBITMQ_URL.replace("127.0.0.1:5672", broker_proxy.address)
    stack = make_stack(consumer=False, request_timeout=10.0, forward_timeout=8.0)
    first, first_thread = start_consumer(replace(stack.config, rabbitmq_url=proxied))
    assert first.ready.wait(timeout=5)
    stale_before = REGISTRY.get_sample_value("router_stale_replies_total") or 0
    second = None
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: stack.client.get("/slow?seconds=1.5"))
            assert wait_for(lambda: flavour_loads["high"].slow_hits == 1, timeout=10)
            # The broker loses the first consumer mid-request and redelivers to a second one,
            # while the first reconnects and still publishes its own reply.
            second, second_thread = start_consumer(stack.config)
            broker_proxy.cut()
            broker_proxy.restore()
            reply = pending.result(timeout=15)
            assert wait_for(
                lambda: flavour_loads["high"].slow_hits == 2 and flavour_loads["high"].active == 0,
                timeout=10,
            )
            time.sleep(0.5)  # both replies have reached the router's connection by now
            # The pool's one thread owns the same router connection, so this call pumps it again.
            follow_up = pool.submit(lambda: stack.client.get("/echo")).result(timeout=15)
    finally:
        first.stop()
        first_thread.join(timeout=15)
        if second is not None:
            second.stop()
            second_thread.join(timeout=15)

    assert reply.status_code == 200
    assert reply.get_json()["slept"] == 1.5
    assert follow_up.status_code == 200
    assert follow_up.get_json()["path"] == "/echo"
    assert REGISTRY.get_sample_value("router_stale_replies_total") == stale_before + 1


def test_idle_router_connection_stays_open(make_stack, engine, caplog):
    engine.decision = decision({"high": 100, "mid": 0, "low": 0})
    stack = make_stack(heartbeat=1)
    assert stack.client.get("/echo").status_code == 200
    caplog.set_level(logging.INFO, logger="buffer.rpc")

    # The broker closes a connection that misses heartbeats for two intervals. The
    # router's I/O thread keeps sending them while no request comes in.
    time.sleep(4)
    reply = stack.client.get("/echo")

    assert reply.status_code == 200
    messages = [record.getMessage() for record in caplog.records]
    assert not any("event=broker_connection_lost" in message for message in messages)
    assert not any("event=broker_connected" in message for message in messages)
