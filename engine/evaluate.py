"""Evaluate scheduling policies on a recorded carbon trace: `python -m engine.evaluate`.

The command replays an actuals CSV (`from,actual`) and a forecast-snapshot
CSV (`issued_at,from,forecast`) slot by slot. It runs every selected policy
as the engine would, seeing only forecasts issued so far and feeding the
credit ledger with the realised counts, and charges emissions with actual
intensity. It prints one row per policy plus two references: `optimum`
(perfect foresight, exact) and `constant-mix` (carbon-blind mix that just
meets the target). The table, CSVs and a PNG chart go to the output directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST, Trace, load_trace
from engine.evaluation.demand import DEMAND_FORECASTS
from engine.evaluation.replay import CURRENT_MODES, TraceKnowledge
from engine.evaluation.report import Row, format_table, summarise, write_chart, write_csv, write_window_csv
from engine.evaluation.simulate import (
    DEMAND_SHAPES,
    Outcome,
    Scenario,
    baseline_emissions,
    demand_profile,
    run_constant_mix,
    run_optimum,
    run_policy,
    window_slices,
)
from engine.forecast import MODELS
from engine.model import SLOT, Flavour
from engine.policies import POLICIES

log = logging.getLogger("engine.evaluate")

DEFAULT_FLAVOURS = ("high:100:1.0", "mid:50:0.6", "low:30:0.3")
# Policies in the order the table lists them; registered policies not named here follow.
POLICY_ORDER = ("p100", "random", "round-robin", "credit-greedy", "forecast-aware", "forecast-aware-global",
                "forecast-optimal")


@dataclass
class Evaluation:
    """Rows of the table and the outcomes behind them."""

    rows: list[Row]
    outcomes: list[Outcome]
    windows: list[slice]
    seconds: float
    window_labels: list[str]  # start of each window, UTC


def parse_flavour(text: str) -> Flavour:
    """Parse NAME:PRECISION:ENERGY, precision 0-100 as in the engine API and energy relative."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise argparse.ArgumentTypeError(
            f"invalid flavour {text!r}: expected NAME:PRECISION:ENERGY, e.g. low:30:0.3")
    try:
        precision, energy = float(parts[1]), float(parts[2])
    except ValueError as error:
        message = f"invalid flavour {text!r}: precision and energy must be numbers"
        raise argparse.ArgumentTypeError(message) from error
    if not 0 <= precision <= 100 or energy < 0:
        raise argparse.ArgumentTypeError(
            f"invalid flavour {text!r}: expected precision from 0 to 100 and energy >= 0")
    return Flavour(name=parts[0], precision=precision / 100, energy=energy)


def parse_option(text: str) -> tuple[str, object]:
    """Parse KEY=VALUE into a policy option; numbers become floats."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(
            f"invalid policy option {text!r}: expected KEY=VALUE, e.g. hedge=0.002")
    try:
        return key, float(value)
    except ValueError:
        return key, value


def policy_names(requested: list[str] | None) -> list[str]:
    """Return the requested policies, or every registered one in table order."""
    if requested:
        unknown = [name for name in requested if name not in POLICIES]
        if unknown:
            expected = ", ".join(sorted(POLICIES))
            raise ValueError(f"unknown policy {', '.join(unknown)}: expected some of {expected}")
        return requested
    known = [name for name in POLICY_ORDER if name in POLICIES]
    return known + sorted(name for name in POLICIES if name not in known)


def run_evaluation(*, trace: Trace, scenario: Scenario, policies: list[str], knowledge: TraceKnowledge
                   ) -> Evaluation:
    """Run every policy and both references over the trace and summarise them."""
    started = time.perf_counter()
    # Build the carbon snapshots shared by all policies first, so no row's time includes them.
    for slot in range(len(trace.actuals)):
        knowledge.snapshot(trace.first + SLOT * slot)
    outcomes = []
    for name in policies:
        outcome = run_policy(name, trace=trace, knowledge=knowledge, scenario=scenario)
        log.info("policy replayed policy=%s seconds=%.2f", name, outcome.seconds)
        outcomes.append(outcome)
    outcomes.append(run_optimum(trace=trace, scenario=scenario))
    outcomes.append(run_constant_mix(trace=trace, scenario=scenario))
    windows = window_slices(trace, window=scenario.window)
    rows = summarise(outcomes, baseline=baseline_emissions(trace=trace, scenario=scenario), windows=windows,
                     target_error=scenario.target_error)
    labels = [(trace.first + SLOT * window.start).strftime("%Y-%m-%dT%H:%MZ") for window in windows]
    return Evaluation(rows=rows, outcomes=outcomes, windows=windows, seconds=time.perf_counter() - started,
                      window_labels=labels)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--actual", type=Path, default=DEFAULT_ACTUAL,
                        help="CSV of actual intensity, columns from,actual in gCO2/kWh "
                             "(default: bundled GB trace)")
    parser.add_argument("--forecast", type=Path, default=DEFAULT_FORECAST,
                        help="CSV of forecast snapshots, columns issued_at,from,forecast in gCO2/kWh "
                             "(default: bundled GB trace); pass an empty string to use none")
    parser.add_argument("--flavour", action="append", type=parse_flavour, metavar="NAME:PRECISION:ENERGY",
                        help="a flavour: precision 0-100, energy per request relative to the most precise "
                             f"(repeat; default: {' '.join(DEFAULT_FLAVOURS)})")
    parser.add_argument("--target-error", type=float, default=0.15,
                        help="quality target error as a fraction: every window must average a precision "
                             ">= 1 - this (default 0.15)")
    parser.add_argument("--window-hours", type=float, default=24.0,
                        help="quality window length in hours, aligned to the Unix epoch (default 24)")
    parser.add_argument("--demand", choices=DEMAND_SHAPES, default="flat",
                        help="demand profile: flat, or daily (0.4x the mean at 04:00 UTC, 1.6x at 16:00 UTC)")
    parser.add_argument("--demand-forecast", choices=DEMAND_FORECASTS, default="exact",
                        help="demand forecast the policies see: the profile itself (exact), the "
                             "previous slot's requests repeated (last-slot), or the same slot a day earlier "
                             "(seasonal) (default exact)")
    parser.add_argument("--requests-per-slot", type=float, default=1000.0,
                        help="mean requests per half-hour slot (default 1000)")
    parser.add_argument("--interval-minutes", type=float, default=30.0,
                        help="minutes between policy evaluations; a slot start always triggers one, "
                             "as in the engine (default 30, one per slot)")
    parser.add_argument("--policy", action="append", metavar="NAME",
                        help="policy to evaluate (repeat; default: all registered: "
                             f"{', '.join(policy_names(None))})")
    parser.add_argument("--option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                        help="policy option passed to every policy, e.g. hedge=0.002 (repeat)")
    parser.add_argument("--credit-min", type=float, default=-0.5, help="ledger credit minimum (default -0.5)")
    parser.add_argument("--credit-max", type=float, default=0.5, help="ledger credit maximum (default 0.5)")
    parser.add_argument("--intensity-floor", type=float, default=100.0,
                        help="throttleIntensityFloor in gCO2/kWh, read by some policies (default 100)")
    parser.add_argument("--intensity-ceiling", type=float, default=250.0,
                        help="throttleIntensityCeiling in gCO2/kWh, read by some policies (default 250)")
    parser.add_argument("--extension", choices=MODELS, default="seasonal-naive",
                        help="forecast model for slots past the latest operator snapshot "
                             "(default seasonal-naive; holt-winters fits once per slot and takes minutes)")
    parser.add_argument("--current-intensity", choices=CURRENT_MODES, default="actual",
                        help="what the current slot's intensity is: its actual, as the engine's trace replay "
                             "reports it, or the latest forecast, as a live API would (default actual)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policy (default 0)")
    parser.add_argument("--out", type=Path, default=Path("out/evaluate"),
                        help="output directory for summary.md, summary.csv, windows.csv, chart.png")
    return parser


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """Build and check the scenario; raises ValueError naming the bad option."""
    if not 0 <= args.target_error <= 1:
        raise ValueError(f"invalid --target-error {args.target_error}: expected a fraction from 0 to 1")
    if args.window_hours <= 0:
        raise ValueError(f"invalid --window-hours {args.window_hours}: expected a number > 0")
    if args.interval_minutes <= 0:
        raise ValueError(f"invalid --interval-minutes {args.interval_minutes}: expected a number > 0")
    if args.credit_min >= args.credit_max:
        raise ValueError(f"invalid credit band: --credit-min {args.credit_min} must be below --credit-max "
                         f"{args.credit_max}")
    flavours = tuple(args.flavour or [parse_flavour(text) for text in DEFAULT_FLAVOURS])
    names = [flavour.name for flavour in flavours]
    if len(set(names)) != len(names):
        raise ValueError(f"invalid --flavour list {names}: flavour names must be unique")
    return Scenario(
        flavours=flavours,
        target_error=args.target_error,
        window=timedelta(hours=args.window_hours),
        demand=demand_profile(args.demand, requests_per_slot=args.requests_per_slot),
        interval=timedelta(minutes=args.interval_minutes),
        credit_min=args.credit_min,
        credit_max=args.credit_max,
        intensity_floor=args.intensity_floor,
        intensity_ceiling=args.intensity_ceiling,
        options=dict(args.option),
        seed=args.seed,
        demand_forecast=args.demand_forecast,
    )


def write_outputs(evaluation: Evaluation, *, target_error: float, out: Path) -> str:
    """Write summary.md, summary.csv, windows.csv and chart.png; return the table."""
    out.mkdir(parents=True, exist_ok=True)
    table = format_table(evaluation.rows, target_error=target_error)
    (out / "summary.md").write_text(table + "\n", encoding="utf-8")
    write_csv(evaluation.rows, out / "summary.csv")
    write_window_csv(evaluation.outcomes, evaluation.windows, out / "windows.csv",
                     labels=evaluation.window_labels)
    write_chart(evaluation.rows, evaluation.outcomes, evaluation.windows, target_error=target_error,
                labels=evaluation.window_labels, path=out / "chart.png")
    return table


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        scenario = scenario_from_args(args)
        policies = policy_names(args.policy)
        trace = load_trace(args.actual, args.forecast if str(args.forecast) not in ("", ".") else None)
        knowledge = TraceKnowledge(trace, extension=args.extension, current=args.current_intensity)
    except ValueError as error:
        parser.error(str(error))

    evaluation = run_evaluation(trace=trace, scenario=scenario, policies=policies, knowledge=knowledge)
    table = write_outputs(evaluation, target_error=scenario.target_error, out=args.out)
    print(f"trace {trace.name}: {len(trace.actuals)} slots, {len(evaluation.windows)} windows of "
          f"{args.window_hours:g} h, target precision {1 - scenario.target_error:.3f}")
    print(table)
    print(f"evaluated in {evaluation.seconds:.1f} s; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
