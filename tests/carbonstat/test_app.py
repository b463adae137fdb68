"""carbonstat's HTTP API: results per flavour, input validation, health and metrics."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonstat.app import create_app
from carbonstat.flavours import FLAVOURS, average, flavour_named, validate_numbers


def client_for(flavour: str, **extra):
    return create_app({"FLAVOUR": flavour, **extra}).test_client()


@pytest.mark.parametrize(
    ("flavour", "expected_avg", "precision"),
    [
        # 1..8: every number -> 4.5; 1,3,5,7 -> 4.0; 1,5 -> 3.0
        ("high", 4.5, 100),
        ("mid", 4.0, 50),
        ("low", 3.0, 25),
    ],
)
def test_avg_reads_flavour_share(flavour, expected_avg, precision):
    response = client_for(flavour).post("/avg", json={"numbers": [1, 2, 3, 4, 5, 6, 7, 8]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["avg"] == expected_avg
    assert body["flavour"] == flavour
    assert body["precision"] == precision
    assert isinstance(body["elapsed_ms"], float)
    assert body["elapsed_ms"] >= 0


def test_avg_of_one_number_in_every_flavour():
    for name in FLAVOURS:
        body = client_for(name).post("/avg", json={"numbers": [7.5]}).get_json()
        assert body["avg"] == 7.5, name


def test_avg_mid_reads_every_second():
    body = client_for("mid").post("/avg", json={"numbers": [10, 1000, 20, 1000, 30]}).get_json()
    assert body["avg"] == 20.0


def test_avg_without_json_content_type():
    response = client_for("high").post("/avg", data='{"numbers": [2, 4]}', content_type="text/plain")
    assert response.status_code == 200
    assert response.get_json()["avg"] == 3.0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, 'missing field "numbers"'),
        ({"numbers": None}, 'missing field "numbers"'),
        ({"numbers": []}, "empty"),
        ({"numbers": "1,2,3"}, "must be a JSON array"),
        ({"numbers": {"a": 1}}, "must be a JSON array"),
        ({"numbers": 5}, "must be a JSON array"),
        ({"numbers": [1, "2", 3]}, '"numbers"[1] is not a number'),
        ({"numbers": [1, None]}, '"numbers"[1] is not a number'),
        ({"numbers": [True, 2]}, '"numbers"[0] is not a number'),
        ({"numbers": [1, [2]]}, '"numbers"[1] is not a number'),
    ],
)
def test_avg_rejects_invalid_numbers(body, fragment):
    response = client_for("high").post("/avg", json=body)
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_avg_rejects_non_finite_numbers(literal):
    # Python's JSON parser accepts these literals, so they reach validation.
    response = client_for("high").post(
        "/avg", data=f'{{"numbers": [1, {literal}]}}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "not finite" in response.get_json()["error"]


def test_avg_rejects_integer_beyond_float_range():
    response = client_for("high").post(
        "/avg", data='{"numbers": [1' + "0" * 400 + "]}", content_type="application/json"
    )
    assert response.status_code == 400
    assert "too large" in response.get_json()["error"]


@pytest.mark.parametrize("body", ["not json", "[1, 2, 3]", '"numbers"', ""])
def test_avg_rejects_non_object_body(body):
    response = client_for("low").post("/avg", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]


def test_avg_rejects_oversized_body_with_413():
    client = client_for("high", MAX_BODY_BYTES=64)
    response = client.post("/avg", json={"numbers": list(range(100))})
    assert response.status_code == 413
    assert "larger than 64 bytes" in response.get_json()["error"]


def test_avg_near_float_max():
    huge = 1.7e308
    body = client_for("high").post("/avg", json={"numbers": [huge, huge]}).get_json()
    assert body["avg"] == pytest.approx(huge)


def test_unknown_route_returns_json_error():
    client = client_for("high")
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert "error" in missing.get_json()
    wrong_method = client.get("/avg")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.get_json()


def test_healthz_reports_flavour():
    response = client_for("mid").get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "flavour": "mid", "precision": 50}


def test_flavour_from_environment(monkeypatch):
    monkeypatch.setenv("CARBONSTAT_FLAVOUR", "low")
    body = create_app().test_client().get("/healthz").get_json()
    assert body["flavour"] == "low"


def test_config_flavour_wins_over_environment(monkeypatch):
    monkeypatch.setenv("CARBONSTAT_FLAVOUR", "low")
    body = create_app({"FLAVOUR": "mid"}).test_client().get("/healthz").get_json()
    assert body["flavour"] == "mid"


def test_unknown_flavour_fails_at_start():
    with pytest.raises(ValueError, match="unknown carbonstat flavour 'ultra'; set one of: high, mid, low"):
        create_app({"FLAVOUR": "ultra"})


def test_metrics_count_requests_by_status():
    client = client_for("mid")
    client.post("/avg", json={"numbers": [1, 2]})
    client.post("/avg", json={"numbers": [1, 2, 3]})
    client.post("/avg", json={"numbers": []})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'carbonstat_requests_total{flavour="mid",status="200"} 2.0' in text
    assert 'carbonstat_requests_total{flavour="mid",status="400"} 1.0' in text
    assert 'carbonstat_flavour_precision{flavour="mid"} 50.0' in text
    assert 'carbonstat_request_duration_seconds_count{flavour="mid"} 2.0' in text
    # mid reads 1 of [1, 2] and 2 of [1, 2, 3].
    assert 'carbonstat_numbers_read_total{flavour="mid"} 3.0' in text


def test_apps_keep_separate_metrics():
    first = client_for("high")
    second = client_for("high")
    first.post("/avg", json={"numbers": [1]})
    text = second.get("/metrics").get_data(as_text=True)
    assert 'status="200"' not in text


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(numbers=st.lists(finite | st.integers(-(10**12), 10**12), min_size=1, max_size=60))
def test_average_matches_definition(numbers):
    values = validate_numbers(numbers)
    for name, stride in (("high", 1), ("mid", 2), ("low", 4)):
        chosen = [float(v) for index, v in enumerate(numbers) if index % stride == 0]
        expected = sum(chosen) / len(chosen)
        assert math.isclose(average(values, flavour_named(name)), expected, rel_tol=1e-9, abs_tol=1e-6)


def test_error_message_length_is_bounded():
    with pytest.raises(ValueError) as info:
        validate_numbers([1, "x" * 10_000])
    assert len(str(info.value)) < 100
    assert str(info.value).startswith('"numbers"[1] is not a number')
