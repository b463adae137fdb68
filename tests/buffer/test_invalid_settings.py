"""Invalid settings stop the router and the consumer at start-up with one clear message."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALID_ENV = {
    "FLAVOURS": "high:100,low:25",
    # Unique in case a setting is ever accepted and the process reaches the broker.
    "SCHEDULE_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
    "ROUTER_BIND": "127.0.0.1:0",
    "ENGINE_URL": "",
    "FLAVOUR_URLS": "high=http://127.0.0.1:1",
}
ROUTER = [sys.executable, "-m", "gunicorn", "-c", "buffer/gunicorn_router.py", "buffer.router:create_app()"]
CONSUMER = [sys.executable, "-m", "buffer.consumer"]
CASES = [
    ("FLAVOURS", "high", "FLAVOURS entry 'high' is invalid"),
    ("REQUEST_TIMEOUT", "nan", "REQUEST_TIMEOUT='nan'"),
    ("ROUTER_SEED", "abc", "ROUTER_SEED='abc' is not an integer"),
    ("RABBITMQ_URL", "not a url", "RABBITMQ_URL='not a url' is invalid"),
    ("CONSUMER_PREFETCH", "70000", "CONSUMER_PREFETCH=70000 is invalid"),
    ("LOG_LEVEL", "chatty", "LOG_LEVEL='chatty' is invalid"),
]


def run_with(command: list[str], key: str, value: str, **extra: str) -> subprocess.CompletedProcess:
    env = {name: text for name, text in os.environ.items() if name not in VALID_ENV}
    env.update(VALID_ENV)
    env.update(extra)
    env[key] = value
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("key", "value", "message"), CASES)
def test_router_rejects_invalid_setting(key, value, message):
    result = run_with(ROUTER, key, value)

    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("key", "value", "message"), CASES)
def test_consumer_rejects_invalid_setting(key, value, message):
    result = run_with(CONSUMER, key, value)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_consumer_reports_busy_metrics_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"CONSUMER_METRICS_BIND": "127.0.0.1"}
        result = run_with(CONSUMER, "CONSUMER_METRICS_PORT", str(port), **env)

    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
