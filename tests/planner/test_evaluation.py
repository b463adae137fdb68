"""The evaluation replay: no peeking, exact references, outputs and option errors."""

from __future__ import annotations

import csv
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from engine.carbon.trace import OperatorForecast, Trace
from engine.evaluate import main, parse_flavour, run_evaluation
from engine.evaluation.replay import TraceKnowledge
from engine.evaluation.simulate import Scenario, demand_profile, run_optimum, run_policy
from engine.model import SLOT, Flavour
from engine.planner import plan_window

FLAVOURS = (Flavour("high", 1.0, 1.0), Flavour("mid", 0.5, 0.6), Flavour("low", 0.3, 0.3))
FIRST = datetime(2023, 3, 21, tzinfo=UTC)


def synthetic_trace(days: int, *, seed: int, exact_forecasts: bool) -> Trace:
    """A daily-shaped random trace; with exact_forecasts, a snapshot equal to the actuals every slot."""
    generator = random.Random(seed)
    actuals = tuple(120 + 60 * math.sin(2 * math.pi * slot / 48) + generator.uniform(-30, 30)
                    for slot in range(48 * days))
    forecasts = ()
    if exact_forecasts:
        forecasts = tuple(
            OperatorForecast(FIRST + SLOT * slot,
                             {FIRST + SLOT * later: actuals[later] for later in range(slot, len(actuals))})
            for slot in range(len(actuals)))
    return Trace(name="synthetic", first=FIRST, actuals=actuals, forecasts=forecasts)


def test_snapshot_never_reads_future_data():
    base = synthetic_trace(3, seed=1, exact_forecasts=False)
    now_index = 70
    now = FIRST + SLOT * now_index + timedelta(minutes=10)
    early = OperatorForecast(FIRST + timedelta(hours=12),
                             {FIRST + SLOT * s: 100.0 + s for s in range(24, 120)})
    late = OperatorForecast(now + timedelta(minutes=1),
                            {FIRST + SLOT * s: 999.0 for s in range(now_index, 144)})
    # Same past, different future actuals, plus a snapshot issued one minute after now.
    changed = tuple(value if slot <= now_index else 999.0 for slot, value in enumerate(base.actuals))
    seen = Trace(name="a", first=FIRST, actuals=base.actuals, forecasts=(early,))
    other = Trace(name="a", first=FIRST, actuals=changed, forecasts=(early, late))

    first = TraceKnowledge(seen).snapshot(now)
    second = TraceKnowledge(other).snapshot(now)

    assert first.slots == second.slots
    assert first.slots[0].intensity == base.actuals[now_index]
    assert first.slots[1].intensity == 100.0 + now_index + 1
    assert len(first.slots) == 96


def test_snapshot_current_slot_can_use_forecast():
    trace = synthetic_trace(2, seed=2, exact_forecasts=False)
    forecast = OperatorForecast(FIRST, {FIRST + SLOT * s: 77.0 for s in range(96)})
    trace = Trace(name="t", first=FIRST, actuals=trace.actuals, forecasts=(forecast,))

    snapshot = TraceKnowledge(trace, current="forecast").snapshot(FIRST + SLOT * 5)

    assert snapshot.slots[0].intensity == 77.0
    assert snapshot.slots[0].actual is False


def test_exact_forecasts_keep_every_window_on_target():
    trace = synthetic_trace(4, seed=3, exact_forecasts=True)
    scenario = Scenario(flavours=FLAVOURS, target_error=0.15,
                        demand=demand_profile("daily", requests_per_slot=500))
    evaluation = run_evaluation(trace=trace, scenario=scenario, policies=["forecast-optimal"],
                                knowledge=TraceKnowledge(trace))
    rows = {row.name: row for row in evaluation.rows}

    assert rows["forecast-optimal"].windows_below_target == 0
    assert rows["forecast-optimal"].worst_window_precision >= 0.85 - 1e-9
    assert rows["forecast-optimal"].optimum_share_percent >= 97.0
    assert rows["forecast-optimal"].reduction_percent <= rows["optimum"].reduction_percent + 1e-9


def test_optimum_row_is_exact_per_window():
    trace = synthetic_trace(2, seed=4, exact_forecasts=False)
    scenario = Scenario(flavours=FLAVOURS, target_error=0.2)
    outcome = run_optimum(trace=trace, scenario=scenario)

    for day in range(2):
        window = slice(48 * day, 48 * (day + 1))
        plan = plan_window(flavours=FLAVOURS, intensities=trace.actuals[window], demand=[1000.0] * 48,
                           target_error=0.2)
        assert math.isclose(outcome.emissions[window].sum(), plan.expected_emissions, rel_tol=1e-12)
        assert math.isclose(outcome.precision_sum[window].sum() / 48000, 0.8, rel_tol=1e-12)


def test_sub_slot_interval_serves_all_demand():
    trace = synthetic_trace(1, seed=5, exact_forecasts=True)
    scenario = Scenario(flavours=FLAVOURS, target_error=0.15, interval=timedelta(minutes=10))
    outcome = run_policy("forecast-optimal", trace=trace, knowledge=TraceKnowledge(trace), scenario=scenario)

    assert math.isclose(outcome.requests.sum(), 48 * 1000.0)
    assert outcome.precision_sum.sum() / outcome.requests.sum() >= 0.85 - 1e-9


def test_daily_demand_profile_keeps_mean():
    profile = demand_profile("daily", requests_per_slot=200.0)

    assert len(profile) == 48
    assert math.isclose(sum(profile) / 48, 200.0, rel_tol=1e-9)
    assert min(profile) == profile[7]  # 03:30-04:00 UTC, next to the 04:00 trough
    assert max(profile) > 1.5 * 200.0


def test_command_writes_table_csv_and_chart(tmp_path, capsys):
    code = main(["--policy", "p100", "--policy", "forecast-optimal", "--out", str(tmp_path)])
    printed = capsys.readouterr().out

    assert code == 0
    assert "| forecast-optimal |" in printed
    assert "*optimum* (reference)" in printed
    assert "*constant-mix* (reference)" in printed
    with (tmp_path / "summary.csv").open() as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    assert names == ["p100", "forecast-optimal", "optimum", "constant-mix"]
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (tmp_path / "windows.csv").open() as handle:
        windows = list(csv.DictReader(handle))
    assert len(windows) == 9
    assert windows[0]["window_start_utc"] == "2023-03-21T00:00Z"
    assert windows[-1]["window_start_utc"] == "2023-03-29T00:00Z"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--flavour", "low:30"], "invalid flavour 'low:30'"),
        (["--flavour", "low:300:0.3"], "expected precision from 0 to 100"),
        (["--target-error", "1.5"], "invalid --target-error 1.5"),
        (["--policy", "nope"], "unknown policy nope"),
        (["--credit-min", "1", "--credit-max", "0"], "invalid credit band"),
        (["--flavour", "a:100:1", "--flavour", "a:50:0.5"], "flavour names must be unique"),
    ],
)
def test_command_rejects_bad_options(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as raised:
        main([*argv, "--out", str(tmp_path)])

    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_parse_flavour_converts_precision_to_fraction():
    assert parse_flavour("mid:50:0.6") == Flavour("mid", 0.5, 0.6)
