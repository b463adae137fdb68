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


def test_namespace_defaults_to_default(monkeypatch):
    monkeypatch.delenv("DEVSTACK_NAMESPACE", raising=False)
    settings = parse([])
    assert settings.namespace == "default"
    assert not settings.per_run_namespace


def test_free_ports_namespace_is_per_run(monkeypatch):
    monkeypatch.delenv("DEVSTACK_NAMESPACE", raising=False)
    settings = parse(["--free-ports"])
    assert settings.namespace == f"devstack-{settings.ports['router']}"
    assert settings.per_run_namespace


def test_free_ports_keeps_given_namespace(monkeypatch):
    monkeypatch.delenv("DEVSTACK_NAMESPACE", raising=False)
    given = parse(["--free-ports", "--namespace", "team-a"])
    assert given.namespace == "team-a"
    assert not given.per_run_namespace
    monkeypatch.setenv("DEVSTACK_NAMESPACE", "team-b")
    assert parse(["--free-ports"]).namespace == "team-b"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--speed-up", "0"], "--speed-up must be > 0"),
        (["--router-port", "70000"], "--router-port must be 1-65535"),
        (["--router-port", "8080"], "two components share a port"),
        (["--trace", "/nonexistent/trace.csv"], "trace file not found: /nonexistent/trace.csv"),
        (["--namespace", "Team_A"], "--namespace must be lowercase letters, digits and '-'.*'Team_A'"),
        (["--name", "svc-"], "--name must be lowercase letters"),
    ],
)
def test_invalid_settings_rejected(argv, message):
    with pytest.raises(SettingsError, match=message):
        parse(argv)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEVSTACK_ROUTER_PORT", "abc", "argument --router-port: invalid int value: 'abc'"),
        ("DEVSTACK_SPEED_UP", "fast", "argument --speed-up: invalid float value: 'fast'"),
    ],
)
def test_malformed_environment_is_usage_error(monkeypatch, capsys, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exited:
        parse([])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
