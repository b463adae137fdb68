"""`carbonTarget: trace:<path>` reads only files in the engine's trace directory."""

import copy
import shutil

import pytest

from engine.app import create_app
from engine.carbon import close_sources
from engine.carbon.trace import DATA_DIR, DEFAULT_ACTUAL
from engine.config import EngineConfig
from tests.engine.conftest import CONFIG
from tests.engine.fakes import Clock

REJECTED = "must be a file in the engine's trace directory"


@pytest.fixture
def trace_client():
    def build(settings=None):
        config = EngineConfig(clock=Clock(), demand_forecast=False, carbon_settings=settings or {})
        return create_app(config).test_client()

    yield build
    close_sources()


def put_target(client, target):
    body = copy.deepcopy(CONFIG)
    body["scheduler"]["carbonTarget"] = target
    return client.put("/config/default/traced", json=body)


def carbon_target_message(response) -> str:
    details = {detail["field"]: detail["message"] for detail in response.get_json()["details"]}
    assert list(details) == ["scheduler.carbonTarget"]
    return details["scheduler.carbonTarget"]


@pytest.mark.parametrize("target", [
    "trace:/etc/passwd",
    "trace:/etc/no-such-file.csv",
    "trace:../../../../etc/passwd",
    f"trace:{DEFAULT_ACTUAL.name}, /etc/hostname",
])
def test_trace_outside_directory_rejected(trace_client, target):
    response = put_target(trace_client(), target)
    assert response.status_code == 400
    message = carbon_target_message(response)
    assert REJECTED in message
    assert "root:" not in message


def test_rejection_same_for_existing_and_missing(trace_client):
    client = trace_client()
    existing = carbon_target_message(put_target(client, "trace:/etc/passwd"))
    missing = carbon_target_message(put_target(client, "trace:/etc/passwd-not-there"))
    assert existing.replace("/etc/passwd", "X") == missing.replace("/etc/passwd-not-there", "X")


def test_bundled_trace_by_file_name_accepted(trace_client):
    response = put_target(trace_client(), f"trace:{DEFAULT_ACTUAL.name}")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["carbon"]["source"] == "trace:gb-national-2023-03"


def test_bundled_trace_by_absolute_path_accepted(trace_client):
    response = put_target(trace_client(), f"trace:{DATA_DIR / DEFAULT_ACTUAL.name}")
    assert response.status_code == 200, response.get_json()


def test_configured_trace_directory_used(trace_client, tmp_path):
    shutil.copy(DEFAULT_ACTUAL, tmp_path / "site-actual.csv")
    client = trace_client({"trace_dir": str(tmp_path)})
    accepted = put_target(client, "trace:site-actual.csv")
    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["carbon"]["source"] == "trace:site"
    bundled = put_target(client, f"trace:{DEFAULT_ACTUAL}")
    assert bundled.status_code == 400
    assert REJECTED in carbon_target_message(bundled)


def test_operator_trace_setting_not_restricted(trace_client, tmp_path):
    shutil.copy(DEFAULT_ACTUAL, tmp_path / "operator-actual.csv")
    client = trace_client({"trace_actual": str(tmp_path / "operator-actual.csv")})
    response = put_target(client, "trace")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["carbon"]["source"] == "trace:operator"


def test_trace_dir_read_from_environment():
    config = EngineConfig.from_env({"CARBON_TRACE_DIR": "/srv/traces"})
    assert config.carbon_settings["trace_dir"] == "/srv/traces"
