"""Benchmark: forecaster fit time and accuracy on the GB trace, against seasonal naive and the operator.

Rolling origins: every operator forecast snapshot of the trace with at least
two days of actuals before it (14 of 17 snapshots). At each origin every
model is fitted only on actuals of slots before the origin slot. All
forecasters are scored on the same slots: those the snapshot covers and that
have an actual, at leads of 1-6 h and 6-24 h. engine/carbon/evaluation.py and
docs/carbon.md describe the method.

Fit time is the process CPU time and the wall time of `forecast_series` (fit
plus a forecast of 48 steps) per origin, so it grows with the history length
(96 to 430 points here). Wall time also counts waiting for the CPU when other
processes run. The first fit of a process also imports statsmodels, so it is
timed separately.

Run: `make bench-forecast` or `.venv/bin/python bench/forecast_bench.py`.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.carbon.evaluation import LEAD_BANDS, NAIVE, OPERATOR, evaluate_trace  # noqa: E402
from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST, load_trace  # noqa: E402
from engine.forecast import forecast_series  # noqa: E402

MODELS = ("holt-winters", "stl-ets")


def cold_first_fit_seconds(history: tuple[float, ...]) -> float:
    """Time the first Holt-Winters fit of this process, including the statsmodels import."""
    started = time.perf_counter()
    forecast_series(history, horizon=48)
    return time.perf_counter() - started


def milliseconds(seconds: list[float]) -> str:
    """Format the median and max of `seconds` as "12 ms / 30 ms"."""
    return f"{statistics.median(seconds) * 1000:.0f} ms / {max(seconds) * 1000:.0f} ms"


def band_label(index: int) -> str:
    low, high = LEAD_BANDS[index]
    return f"{low.total_seconds() / 3600:g}-{high.total_seconds() / 3600:g} h"


def main() -> None:
    trace = load_trace(DEFAULT_ACTUAL, DEFAULT_FORECAST)
    cold = cold_first_fit_seconds(trace.actuals[:336])
    evaluation = evaluate_trace(trace, models=MODELS)

    print(
        f"trace: {trace.name}, {len(trace.actuals)} half-hour actuals, "
        f"{len(trace.forecasts)} operator snapshots"
    )
    print(f"origins scored: {evaluation.origins}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}"
    )
    print(f"first fit in a fresh process (statsmodels import + Holt-Winters, 336 points): {cold:.2f} s")
    print()

    labels = [band_label(i) for i in range(len(LEAD_BANDS))]
    print(
        f"| forecaster | MAE {labels[0]} | MAE {labels[1]} | fit CPU median / max | fit wall median / max "
        "| fallbacks |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in (*MODELS, NAIVE, OPERATOR):
        score = evaluation.scores[name]
        maes = " | ".join(f"{score.mae(i):.1f}" for i in range(len(LEAD_BANDS)))
        if score.fit_seconds:
            timing = f"{milliseconds(score.fit_cpu_seconds)} | {milliseconds(score.fit_seconds)}"
        else:
            timing = "(published) | (published)"
        fallbacks = str(score.fallbacks) if name != OPERATOR else "-"
        print(f"| {name} | {maes} | {timing} | {fallbacks} |")
    counts = evaluation.scores[OPERATOR].count
    print()
    print(
        f"slots compared per lead band: {', '.join(f'{labels[i]}: {c}' for i, c in enumerate(counts))} "
        "(MAE in gCO2/kWh)"
    )


if __name__ == "__main__":
    main()
