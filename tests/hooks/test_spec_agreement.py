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

from engine.fields import FieldError, parse_duration, parse_number
from engine.validation import SchedulerSpec, validate_scheduler
from hooks.spec import InvalidSpec, validate_spec
from hooks.spec_numbers import PATTERN_HINTS

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
    """Return every problem the hook finds with a spec whose scheduler sets only `field`."""
    spec = {"target": {"service": "shop"}, "scheduler": {field: value}}
    try:
        validate_spec(spec, crd_path=CRD_PATH)
    except InvalidSpec as invalid:
        return [str(problem) for problem in invalid.problems]
    return []


def engine_rejects(field: str, value: object) -> list[str]:
    """Return every error the engine finds with a scheduler section that sets only `field`."""
    errors: list[FieldError] = []
    validate_scheduler({field: value}, policies=POLICIES, errors=errors)
    return [f"{error.field}: {error.message}" for error in errors]


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


DECIMAL_CASES = [
    "0.15", "1e-1", " 0.15 ", "+0.15", ".5", "5.", "0", 0, 0.15, 1, "1", "-0.1", "abc", "", "0.1.2",
    "1e999", "nan", "inf", "0x1", True, [0.1], {"value": 0.1},
]
DURATION_CASES = [
    "300", " 300 ", 300, 1.5, "1.5", "5m", "24h", "1.5h", "500ms", "2d", "31d", "30d", "1e3", 1e3,
    0, "0", -5, "-5", "abc", "", "5 minutes", True, 1e308,
]


# creditMin and creditMax are left out because the CRD bounds them to [-1, 1]
# and the engine only checks that creditMin is below creditMax. The intensity
# ceiling is left out because the engine compares it with the default floor.
@pytest.mark.parametrize("field", ["targetError", "throttleMin", "throttleIntensityFloor"])
@pytest.mark.parametrize("value", DECIMAL_CASES, ids=repr)
def test_decimal_forms_agree(field, value):
    hook = hook_rejects(field, value)
    engine = engine_rejects(field, value)
    assert bool(hook) == bool(engine), f"hook: {hook}, engine: {engine}"


@pytest.mark.parametrize("field", ["creditWindow", "validFor", "discoveryInterval", "carbonTimeout",
                                   "carbonCacheTTL"])
@pytest.mark.parametrize("value", DURATION_CASES, ids=repr)
def test_duration_forms_agree(field, value):
    hook = hook_rejects(field, value)
    engine = engine_rejects(field, value)
    assert bool(hook) == bool(engine), f"hook: {hook}, engine: {engine}"


@pytest.mark.parametrize(("low", "high"), [(0.3, 0.3), (0.4, "0.1"), ("-0.2", 0.2)])
def test_credit_band_order_agrees(low, high):
    spec = {"target": {"service": "shop"}, "scheduler": {"creditMin": low, "creditMax": high}}
    try:
        validate_spec(spec, crd_path=CRD_PATH)
        hook_ok = True
    except InvalidSpec:
        hook_ok = False
    errors: list[FieldError] = []
    validate_scheduler({"creditMin": low, "creditMax": high}, policies=POLICIES, errors=errors)
    assert hook_ok == (not errors), errors


def test_bad_decimal_message_is_a_sentence():
    with pytest.raises(InvalidSpec) as invalid:
        validate_spec({"target": {"service": "shop"}, "scheduler": {"targetError": "abc"}}, crd_path=CRD_PATH)
    assert str(invalid.value) == 'spec.scheduler.targetError: "abc" is not a number; write it like 0.15'


@pytest.mark.parametrize(("section", "value", "expected"), [
    ({"scheduler": {"creditWindow": "soon"}}, "soon",
     'spec.scheduler.creditWindow: "soon" is not a duration; '
     'write seconds like 300 or a unit like 5m or 24h'),
    ({"target": {"service": "shop", "replicas": {"max": "5.5"}}}, "5.5",
     'spec.target.replicas.max: "5.5" is not a whole number; write it like 10'),
    ({"target": {"service": "shop", "replicas": {"max": 5.5}}}, 5.5,
     "spec.target.replicas.max: 5.5 is not a whole number; write it like 10"),
    ({"router": {"resources": {"requests": {"cpu": "lots"}}}}, "lots",
     'spec.router.resources.requests.cpu: "lots" is not a resource quantity; write it like 100m or 128Mi'),
], ids=["duration", "whole string", "whole number", "quantity"])
def test_pattern_messages_are_sentences(section, value, expected):
    spec = {"target": {"service": "shop"}, **section}
    with pytest.raises(InvalidSpec) as invalid:
        validate_spec(spec, crd_path=CRD_PATH)
    assert str(invalid.value) == expected


def test_every_crd_pattern_has_a_message():
    crd_text = CRD_PATH.read_text(encoding="utf-8")
    patterns = set(re.findall(r"pattern: '([^']+)'", crd_text))
    assert patterns
    assert patterns <= set(PATTERN_HINTS), f"patterns without a message: {patterns - set(PATTERN_HINTS)}"


@pytest.mark.parametrize(("spec", "expected"), [
    ({"router": {"replicas": {"min": "0"}}}, 'spec.router.replicas.min: "0" is below the minimum 1'),
    ({"target": {"service": "shop", "queueLength": "0"}},
     'spec.target.queueLength: "0" is below the minimum 1'),
    ({"router": {"cpuUtilization": "101"}}, 'spec.router.cpuUtilization: "101" is above the maximum 100'),
], ids=["replicas", "queue length", "cpu"])
def test_whole_number_strings_are_range_checked(spec, expected):
    with pytest.raises(InvalidSpec) as invalid:
        validate_spec({"target": {"service": "shop"}, **spec}, crd_path=CRD_PATH)
    assert str(invalid.value) == expected


def test_durations_reach_engine_as_seconds():
    spec = validate_spec({"target": {"service": "shop"},
                          "scheduler": {"creditWindow": "24h", "validFor": " 90 ", "carbonTimeout": "1.5"}},
                         crd_path=CRD_PATH)
    assert spec["scheduler"]["creditWindow"] == 86400
    assert spec["scheduler"]["validFor"] == 90
    assert spec["scheduler"]["carbonTimeout"] == 1.5
