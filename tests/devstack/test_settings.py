"""Settings: defaults, overrides from flags and environment, and rejected values."""

import argparse

import pytest

from devstack.settings import DEFAULT_PORTS, SettingsError, add_arguments, settings_from_args


def parse(argv, monkeypatch=None):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


def test_defaults_are_fixed_ports():
    settings = parse([])
    assert settings.ports == DEFAULT_PORTS
    assert settings.speed_up == 120.0
    assert settings.url("router") == "http://127.0.0.1:8000"


def test_environment_overrides_port(monkeypatch):
    monkeypatch.setenv("DEVSTACK_ROUTER_PORT", "9100")
    monkeypatch.setenv("DEVSTACK_SPEED_UP", "600")
    settings = parse([])
    assert settings.ports["router"] == 9100
    assert settings.speed_up == 600.0


def test_flag_overrides_port():
    assert parse(["--engine-port", "9200"]).ports["engine"] == 9200


def test_free_ports_are_distinct():
    settings = parse(["--free-ports"])
    assert len(set(settings.ports.values())) == len(DEFAULT_PORTS)
    assert settings.ports != DEFAULT_PORTS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--speed-up", "0"], "--speed-up must be > 0"),
        (["--router-port", "70000"], "--router-port must be 1-65535"),
        (["--router-port", "8080"], "two components share a port"),
        (["--trace", "/nonexistent/trace.csv"], "trace file not found: /nonexistent/trace.csv"),
    ],
)
def test_invalid_settings_rejected(argv, message):
    with pytest.raises(SettingsError, match=message):
        parse(argv)
