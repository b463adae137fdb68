"""Demo report: per-interval aggregation, emissions against all-high, CSV and chart files."""

import csv

import pytest

from devstack.report import Sample, aggregate, table_line, total_row, write_chart, write_csv
from devstack.status import status_line

ENERGY = {"high": 1.0, "mid": 0.6, "low": 0.3}
FLAVOURS = ["high", "mid", "low"]


def samples():
    return [
        Sample(at=1.0, flavour="high", precision=100, intensity=100.0),
        Sample(at=2.0, flavour="low", precision=25, intensity=100.0),
        Sample(at=3.0, flavour="", precision=0, intensity=100.0, ok=False),
        Sample(at=11.0, flavour="mid", precision=50, intensity=200.0),
        Sample(at=12.0, flavour="mid", precision=50, intensity=200.0),
    ]


def test_aggregate_counts_interval_only():
    row = aggregate(samples(), start=0, end=10, index=0, energy=ENERGY, flavours=FLAVOURS)
    assert row.counts == {"high": 1, "mid": 0, "low": 1}
    assert row.errors == 1
    assert row.avg_precision == 62.5
    assert row.intensity == 100.0


def test_aggregate_emissions_against_all_high():
    row = aggregate(samples(), start=0, end=10, index=0, energy=ENERGY, flavours=FLAVOURS)
    assert row.emissions == pytest.approx(1.0 * 100 + 0.3 * 100)
    assert row.baseline == pytest.approx(200.0)
    assert row.saving == pytest.approx(1 - 130 / 200)


def test_total_row_weights_by_requests():
    rows = [
        aggregate(samples(), start=0, end=10, index=0, energy=ENERGY, flavours=FLAVOURS),
        aggregate(samples(), start=10, end=20, index=1, energy=ENERGY, flavours=FLAVOURS),
    ]
    total = total_row(rows, flavours=FLAVOURS)
    assert total.counts == {"high": 1, "mid": 2, "low": 1}
    assert total.avg_precision == pytest.approx((100 + 25 + 50 + 50) / 4)
    assert total.intensity == pytest.approx(150.0)
    assert total.saving == pytest.approx(1 - (130 + 240) / 600)
    assert total.errors == 1


def test_empty_interval_has_no_saving():
    row = aggregate([], start=0, end=10, index=0, energy=ENERGY, flavours=FLAVOURS)
    assert row.saving is None
    assert row.avg_precision is None
    assert " - " in table_line(row, FLAVOURS)


def test_csv_and_chart_written(tmp_path):
    rows = [
        aggregate(samples(), start=0, end=10, index=0, energy=ENERGY, flavours=FLAVOURS),
        aggregate(samples(), start=10, end=20, index=1, energy=ENERGY, flavours=FLAVOURS),
    ]
    rows[0].weights = {"high": 60, "mid": 20, "low": 20}
    write_csv(tmp_path / "demo.csv", rows, flavours=FLAVOURS)
    write_chart(tmp_path / "demo.png", rows, flavours=FLAVOURS)

    lines = list(csv.DictReader((tmp_path / "demo.csv").open()))
    assert [line["interval"] for line in lines] == ["0", "1", "all"]
    assert lines[0]["requests_high"] == "1"
    assert lines[0]["engine_weight_high"] == "60"
    assert lines[2]["saving_pct"] == f"{100 * (1 - 370 / 600):.2f}"
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_line_shows_decision():
    decision = {
        "policy": "credit-greedy",
        "flavourWeights": {"high": 60, "mid": 25, "low": 15},
        "avgPrecision": 76.25,
        "credits": {"balance": 0.12},
        "processing": {"throttle": 0.8},
        "carbon": {"now": 182, "next": 190, "index": "high", "slots": [{"from": "2023-03-21T08:00Z"}]},
    }
    line = status_line(decision, health={"engine": "ok", "router": "exited 1"})
    assert "intensity 182 g/kWh (high)" in line
    assert "high  60 mid  25 low  15" in line
    assert "throttle 0.80" in line
    assert "credit +0.120" in line
    assert "DOWN: router (exited 1)" in line


def test_status_line_omits_missing_index():
    decision = {"carbon": {"now": 56, "next": 48, "stale": True}, "flavourWeights": {"high": 100}}
    line = status_line(decision)
    assert "intensity 56 g/kWh STALE next 48" in line


def test_status_line_without_decision():
    assert "engine has no decision yet" in status_line(None)
