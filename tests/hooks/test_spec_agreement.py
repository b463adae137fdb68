"""The hooks' spec check, the CRD and the engine accept the same scheduler values.

A value the hook passes but the engine rejects turns into `EngineRejected`
after a round trip. A value the hook rejects but the engine accepts is a
documented form that does not work. Each case runs both validators directly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from engine.validation import FieldError, SchedulerSpec, parse_duration, parse_number, validate_scheduler
from hooks.spec import InvalidSpec, validate_spec

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "metacontroller" / "crd-trafficschedule.yaml"
DOC_PATH = ROOT / "docs" / "trafficschedule.md"
POLICIES = ["credit-greedy"]
SCHEDULER_ATTRIBUTES = {
    "targetError": "target_error", "creditMin": "credit_min", "creditMax": "credit_max",
    "creditWindow": "credit_window", "validFor": "valid_for", "carbonTimeout": "carbon_timeout",
    "carbonCacheTTL": "carbon_cache_ttl", "throttleMin": "throttle_min",
    "throttleIntensityFloor": "throttle_intensity_floor",
    "throttleIntensityCeiling": "throttle_intensity_ceiling",
}


def hook_rejects(field: str, value: object) -> list[str]:
    """Return the hook's problems with `spec.scheduler.<field>: value`, as text."""
    spec = {"target": {"service": "shop"}, "scheduler": {field: value}}
    try:
        validate_spec(spec, crd_path=CRD_PATH)
    except InvalidSpec as invalid:
        return [problem.message for problem in invalid.problems
                if problem.field == f"spec.scheduler.{field}"]
    return []


def engine_rejects(field: str, value: object) -> list[str]:
    errors: list[FieldError] = []
    validate_scheduler({field: value}, policies=POLICIES, errors=errors)
    return [error.message for error in errors if error.field == f"scheduler.{field}"]


def crd_scheduler_field(field: str) -> dict:
    crd = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]["scheduler"]["properties"][field]


@pytest.mark.parametrize("value", [30, 59, 60, 86400, 2592000, 2592001])
def test_credit_window_bounds_agree(value):
    hook = hook_rejects("creditWindow", value)
    engine = engine_rejects("creditWindow", value)
    assert bool(hook) == bool(engine), f"hook: {hook}, engine: {engine}"


def test_crd_credit_window_is_quality_window():
    description = crd_scheduler_field("creditWindow")["description"]
    assert "quality window" in description
    assert "Unix epoch" in description
    assert "velocity" not in description


def documented_scheduler_defaults() -> dict[str, str]:
    """Map each field of the doc's spec.scheduler table to the first value in its default column."""
    section = DOC_PATH.read_text(encoding="utf-8").split("## spec.scheduler", 1)[1].split("\n## ", 1)[0]
    defaults = {}
    for row in section.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        fields = re.findall(r"`(\w+)`", cells[0])
        values = re.findall(r"`([^`]+)`", cells[2])
        for index, field in enumerate(fields):
            defaults[field] = values[index] if index < len(values) else cells[2]
    return defaults


@pytest.mark.parametrize("field", sorted(SCHEDULER_ATTRIBUTES))
def test_documented_defaults_match_engine(field):
    documented = documented_scheduler_defaults()[field]
    engine_default = getattr(SchedulerSpec(), SCHEDULER_ATTRIBUTES[field])
    errors: list[FieldError] = []
    if hasattr(engine_default, "total_seconds"):
        parsed = parse_duration(documented, field_name=field, errors=errors, allow_zero=True)
    else:
        parsed = parse_number(documented, field_name=field, errors=errors)
    assert not errors, f"{field}: documented default {documented!r} is not a value"
    assert parsed == engine_default
