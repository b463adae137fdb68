"""The render command: the same children as the sync hook, as YAML, from files."""

from __future__ import annotations

from pathlib import Path

import yaml

from hooks.config import HookConfig
from hooks.render import build_request, load_documents, main, render, split_inputs
from hooks.sync import sync
from tests.hooks.conftest import NOW, validate_child
from tests.hooks.fakes import EngineServer, FakeEngine

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = ROOT / "examples" / "trafficschedule.yaml"
FLAVOURS = ROOT / "examples" / "carbonstat-flavours.yaml"


def test_render_shipped_example_in_process(capsys):
    exit_code = main([str(SCHEDULE), str(FLAVOURS), "--in-process"])
    captured = capsys.readouterr()
    assert exit_code == 0
    children = [doc for doc in yaml.safe_load_all(captured.out) if doc]
    assert len(children) == 12
    for child in children:
        validate_child(child, namespace="default")
    assert captured.err == ""


def test_render_prints_exactly_the_sync_children(capsys):
    with EngineServer() as server:
        exit_code = main([str(SCHEDULE), str(FLAVOURS), "--engine-url", server.url])
    printed = [doc for doc in yaml.safe_load_all(capsys.readouterr().out) if doc]

    schedule, related = split_inputs([SCHEDULE, FLAVOURS])
    controller = load_documents(ROOT / "metacontroller" / "compositecontroller.yaml")[0]
    request = build_request(schedule, related, controller=controller)
    expected = sync(request, engine=FakeEngine(), config=HookConfig(), now=NOW)["children"]
    assert exit_code == 0
    assert printed == expected


def test_render_function_matches_sync(config):
    response = render([SCHEDULE, FLAVOURS], engine=FakeEngine(), config=config, now=NOW)
    assert [c["kind"] for c in response["children"]].count("ScaledObject") == 5


def test_render_without_flavours_exits_1(capsys):
    exit_code = main([str(SCHEDULE), "--in-process"])
    captured = capsys.readouterr()
    assert exit_code == 1
    assert "FlavoursDiscovered=False NoFlavours" in captured.err
    assert captured.out == ""


def test_render_unreadable_file_exits_2(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    exit_code = main([str(broken), "--in-process"])
    assert exit_code == 2
    assert "cannot read YAML" in capsys.readouterr().err


def test_render_needs_exactly_one_schedule(capsys):
    exit_code = main([str(FLAVOURS), "--in-process"])
    assert exit_code == 2
    assert "expected exactly one TrafficSchedule" in capsys.readouterr().err
