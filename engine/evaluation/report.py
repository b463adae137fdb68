"""Summary rows, table, CSV and chart of an evaluation.

Every row is measured on the same trace and demand:

- `reduction`: 1 - emissions / emissions of sending everything to the most
  precise flavour (p100), in percent;
- `precision`: request-weighted average precision over the whole trace;
- `worst window`: the lowest request-weighted average precision of any
  quality window (fixed windows aligned to the Unix epoch, as the ledger's);
- `below target`: windows whose average precision is below 1 - targetError
  (with a 1e-9 tolerance for float rounding);
- `of optimum`: the row's reduction as a percentage of the optimum's.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.evaluation.simulate import Outcome

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Row:
    """One line of the evaluation table."""

    name: str
    kind: str
    reduction_percent: float
    precision: float
    worst_window_precision: float
    windows_below_target: int
    optimum_share_percent: float
    seconds: float


def summarise(
    outcomes: Sequence[Outcome], *, baseline: float, windows: Sequence[slice], target_error: float
) -> list[Row]:
    """Turn outcomes into table rows; the `optimum` outcome must be among them."""
    by_name = {outcome.name: outcome for outcome in outcomes}
    if "optimum" not in by_name:
        raise ValueError("the optimum reference row is missing, so no share of the optimum can be computed")
    optimum_reduction = _reduction(by_name["optimum"], baseline)
    rows = []
    for outcome in outcomes:
        reduction = _reduction(outcome, baseline)
        window_precision = window_precisions(outcome, windows)
        share = 100 * reduction / optimum_reduction if optimum_reduction > 0 else float("nan")
        rows.append(Row(
            name=outcome.name,
            kind=outcome.kind,
            reduction_percent=100 * reduction,
            precision=float(outcome.precision_sum.sum() / outcome.requests.sum()),
            worst_window_precision=float(min(window_precision)),
            windows_below_target=sum(1 for value in window_precision if value < 1 - target_error - TOLERANCE),
            optimum_share_percent=share,
            seconds=outcome.seconds,
        ))
    return rows


def window_precisions(outcome: Outcome, windows: Sequence[slice]) -> list[float]:
    """Return the request-weighted average precision of each window with requests."""
    values = []
    for window in windows:
        requests = float(outcome.requests[window].sum())
        if requests > 0:
            values.append(float(outcome.precision_sum[window].sum()) / requests)
    return values


def _reduction(outcome: Outcome, baseline: float) -> float:
    return 1.0 - float(outcome.emissions.sum()) / baseline if baseline > 0 else 0.0


def format_table(rows: Sequence[Row], *, target_error: float) -> str:
    """Render rows as a Markdown table, policies first and references last."""
    header = ("| row | emissions reduction vs p100 | average precision | worst window precision "
              f"| windows below {1 - target_error:.3f} | share of optimum | seconds |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        name = row.name if row.kind == "policy" else f"*{row.name}* (reference)"
        lines.append(
            f"| {name} | {row.reduction_percent:.2f} % | {row.precision:.4f} "
            f"| {row.worst_window_precision:.4f} | {row.windows_below_target} "
            f"| {row.optimum_share_percent:.1f} % | {row.seconds:.2f} |"
        )
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Write the rows with one column per field."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def write_window_csv(outcomes: Sequence[Outcome], windows: Sequence[slice], path: Path, *,
                     labels: Sequence[str]) -> None:
    """Write the average precision of every window for every row (one column per row)."""
    table = {outcome.name: window_precisions(outcome, windows) for outcome in outcomes}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["window_start_utc", *table])
        for index in range(max(len(values) for values in table.values())):
            writer.writerow([labels[index], *(f"{values[index]:.6f}" for values in table.values())])


def write_chart(rows: Sequence[Row], outcomes: Sequence[Outcome], windows: Sequence[slice], *,
                target_error: float, labels: Sequence[str], path: Path) -> None:
    """Draw reduction per row and window precision per row into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (bars, lines) = pyplot.subplots(1, 2, figsize=(13, 5))
    colours = ["tab:green" if row.windows_below_target == 0 else "tab:red" for row in rows]
    bars.barh([row.name for row in rows], [row.reduction_percent for row in rows], color=colours)
    bars.invert_yaxis()
    bars.set_xlabel("emissions reduction vs p100 (%)")
    bars.set_title("Reduction (red: some window below target)")

    for outcome in outcomes:
        values = window_precisions(outcome, windows)
        lines.plot(np.arange(len(values)), values, marker="o", label=outcome.name)
    lines.axhline(1 - target_error, color="black", linestyle="--", label="target")
    short = [label[5:16].replace("T", " ") for label in labels]  # "03-21 00:00" of 2023-03-21T00:00Z
    lines.set_xticks(np.arange(len(labels)), short, rotation=45, ha="right", fontsize="small")
    lines.set_xlabel("quality window start (UTC)")
    lines.set_ylabel("average precision")
    lines.set_title("Average precision per window")
    lines.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
