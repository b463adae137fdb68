"""Hook settings from the environment, and the customize hook's selector."""

from __future__ import annotations

import pytest

from hooks.config import HookConfig
from hooks.sync import customize
from tests.hooks.conftest import load_request


def test_config_defaults_without_environment():
    config = HookConfig.from_env({})
    assert config.engine_timeout == 3.0
    assert config.engine_url == "http://carbonrouter-engine.carbonrouter-system.svc.cluster.local"
    assert config.workload_engine_url == config.engine_url


def test_config_reads_hooks_variables():
    config = HookConfig.from_env(
        {
            "HOOKS_ENGINE_URL": "http://127.0.0.1:8080/",
            "HOOKS_ENGINE_TIMEOUT": "0.5",
            "HOOKS_WORKLOAD_ENGINE_URL": "http://engine.internal",
            "HOOKS_ROUTER_IMAGE": "registry.example/router:1.2",
            "HOOKS_RETRY_SECONDS": "30",
        }
    )
    assert config.engine_url == "http://127.0.0.1:8080"
    assert config.engine_timeout == 0.5
    assert config.workload_engine_url == "http://engine.internal"
    assert config.router_image == "registry.example/router:1.2"
    assert config.retry_seconds == 30.0


def test_config_accepts_plain_engine_url():
    config = HookConfig.from_env({"ENGINE_URL": "http://127.0.0.1:8090"})
    assert config.engine_url == "http://127.0.0.1:8090"
    assert config.workload_engine_url == "http://127.0.0.1:8090"


@pytest.mark.parametrize("value", ["soon", "0", "-3"])
def test_config_rejects_bad_timeout(value):
    with pytest.raises(ValueError, match="HOOKS_ENGINE_TIMEOUT"):
        HookConfig.from_env({"HOOKS_ENGINE_TIMEOUT": value})


def test_customize_uses_spec_selector():
    request = load_request("customize-three-flavours.json")
    request["parent"]["spec"]["target"]["selector"] = {"tier": "compute", "team": "shop"}
    rules = customize(request)["relatedResources"]
    assert rules[1]["labelSelector"]["matchLabels"] == {"tier": "compute", "team": "shop"}
    assert rules[0]["labelSelector"]["matchLabels"] == {"carbonrouter/parent-service": "checkout"}


def test_config_reads_engine_cooldown():
    assert HookConfig.from_env({}).engine_cooldown_seconds == 5.0
    assert HookConfig.from_env({"HOOKS_ENGINE_COOLDOWN_SECONDS": "2.5"}).engine_cooldown_seconds == 2.5
    assert HookConfig.from_env({"HOOKS_ENGINE_COOLDOWN_SECONDS": "0"}).engine_cooldown_seconds == 0.0


@pytest.mark.parametrize("raw", ["-1", "nan", "inf", "soon"])
def test_config_rejects_bad_cooldown(raw):
    with pytest.raises(ValueError, match="HOOKS_ENGINE_COOLDOWN_SECONDS"):
        HookConfig.from_env({"HOOKS_ENGINE_COOLDOWN_SECONDS": raw})
