"""Aggregate demo traffic per interval and write it as a table, a CSV file and a PNG chart.

Emissions are an estimate in relative units: each request served by flavour
`f` during intensity `I` (gCO2/kWh) counts `energy_f * I`, where `energy_f`
is the flavour's energy per request relative to `high`. The baseline sends
the same requests to `high`, so it counts `1.0 * I` each. Only the ratio of
the two is meaningful; absolute grams would need the service's real energy
per request, which the demo does not measure.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One successful request: when, which flavour served it, and the intensity at that moment."""

    at: float  # seconds since the demo started
    flavour: str
    precision: float  # 0-100
    intensity: float | None
    ok: bool = True


@dataclass
class IntervalRow:
    """Everything one report row shows about one interval of the demo."""

    index: int
    start: float
    end: float
    slot: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    intensity: float | None = None
    avg_precision: float | None = None
    target_precision: float | None = None
    emissions: float = 0.0
    baseline: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    @property
    def saving(self) -> float | None:
        """Emissions saved against all-`high`, as a fraction (0.2 = 20% less)."""
        if self.baseline <= 0:
            return None
        return 1.0 - self.emissions / self.baseline


def aggregate(
    samples: list[Sample],
    *,
    start: float,
    end: float,
    index: int,
    energy: dict[str, float],
    flavours: list[str],
) -> IntervalRow:
    """Summarise the samples whose time falls in [start, end) into one row."""
    row = IntervalRow(index=index, start=start, end=end, counts={name: 0 for name in flavours})
    precision_sum = 0.0
    intensities = []
    for sample in samples:
        if not start <= sample.at < end:
            continue
        if not sample.ok:
            row.errors += 1
            continue
        row.counts[sample.flavour] = row.counts.get(sample.flavour, 0) + 1
        precision_sum += sample.precision
        if sample.intensity is not None:
            intensities.append(sample.intensity)
            row.emissions += energy.get(sample.flavour, 1.0) * sample.intensity
            row.baseline += sample.intensity
    if row.requests:
        row.avg_precision = precision_sum / row.requests
    if intensities:
        row.intensity = sum(intensities) / len(intensities)
    return row


def total_row(rows: list[IntervalRow], *, flavours: list[str]) -> IntervalRow:
    """Combine interval rows into one row for the whole demo."""
    total = IntervalRow(index=-1, start=rows[0].start if rows else 0.0, end=rows[-1].end if rows else 0.0)
    total.counts = {name: sum(row.counts.get(name, 0) for row in rows) for name in flavours}
    total.errors = sum(row.errors for row in rows)
    total.emissions = sum(row.emissions for row in rows)
    total.baseline = sum(row.baseline for row in rows)
    weighted = [(row.avg_precision, row.requests) for row in rows if row.avg_precision is not None]
    if total.requests:
        total.avg_precision = sum(p * n for p, n in weighted) / total.requests
    weighted_intensity = [(row.intensity, row.requests) for row in rows if row.intensity is not None]
    count = sum(n for _i, n in weighted_intensity)
    if count:
        total.intensity = sum(i * n for i, n in weighted_intensity) / count
    targets = [row.target_precision for row in rows if row.target_precision is not None]
    total.target_precision = targets[-1] if targets else None
    return total


def table_header(flavours: list[str]) -> str:
    shares = " ".join(f"{name:>5}" for name in flavours)
    return (
        f"{'#':>3} {'slot (trace time)':<17} {'g/kWh':>6} {'reqs':>5} {shares}  {'weights':<12}"
        f" {'precision':>9} {'target':>6} {'saved':>6} {'err':>4}"
    )


def table_line(row: IntervalRow, flavours: list[str]) -> str:
    """Format one row: observed share per flavour (%), engine weights, precision, saving."""
    shares = " ".join(f"{_share(row, name):>5}" for name in flavours)
    weights = "/".join(f"{row.weights.get(name, '-')}" for name in flavours) if row.weights else "-"
    label = "all" if row.index < 0 else str(row.index)
    return (
        f"{label:>3} {row.slot[:17]:<17} {_fmt(row.intensity, 0):>6} {row.requests:>5}"
        f" {shares}  {weights:<12}"
        f" {_fmt(row.avg_precision, 1):>9} {_fmt(row.target_precision, 1):>6}"
        f" {_fmt(None if row.saving is None else row.saving * 100, 1, '%'):>6} {row.errors:>4}"
    )


def _share(row: IntervalRow, name: str) -> str:
    if not row.requests:
        return "-"
    return f"{100.0 * row.counts.get(name, 0) / row.requests:.0f}%"


def _fmt(value: float | None, digits: int, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def write_csv(path: Path, rows: list[IntervalRow], *, flavours: list[str]) -> None:
    """Write one line per interval plus a final `all` line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["interval", "start_s", "end_s", "slot", "intensity_g_per_kwh", "requests", "errors"]
            + [f"requests_{name}" for name in flavours]
            + [f"engine_weight_{name}" for name in flavours]
            + ["avg_precision", "target_precision", "emissions_rel", "emissions_all_high_rel", "saving_pct"]
        )
        for row in [*rows, total_row(rows, flavours=flavours)]:
            writer.writerow(
                [
                    "all" if row.index < 0 else row.index,
                    f"{row.start:.1f}",
                    f"{row.end:.1f}",
                    row.slot,
                    _fmt(row.intensity, 1, ""),
                    row.requests,
                    row.errors,
                ]
                + [row.counts.get(name, 0) for name in flavours]
                + [row.weights.get(name, "") for name in flavours]
                + [
                    _fmt(row.avg_precision, 2),
                    _fmt(row.target_precision, 2),
                    f"{row.emissions:.1f}",
                    f"{row.baseline:.1f}",
                    _fmt(None if row.saving is None else row.saving * 100, 2),
                ]
            )


def write_chart(path: Path, rows: list[IntervalRow], *, flavours: list[str]) -> None:
    """Draw observed flavour shares (stacked bars) against intensity, and precision against target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (mix_axes, precision_axes) = plt.subplots(
        2, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    positions = [row.index for row in rows]
    bottom = [0.0] * len(rows)
    colours = {"high": "#1b7837", "mid": "#fdb863", "low": "#b2182b"}
    for name in flavours:
        shares = [100.0 * row.counts.get(name, 0) / row.requests if row.requests else 0.0 for row in rows]
        mix_axes.bar(positions, shares, bottom=bottom, label=name, color=colours.get(name), width=0.85)
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    mix_axes.set_ylabel("share of requests (%)")
    mix_axes.set_ylim(0, 100)
    mix_axes.legend(loc="upper left", title="flavour")

    intensity_axes = mix_axes.twinx()
    intensity_axes.plot(
        positions, [row.intensity for row in rows], color="black", marker="o", label="intensity"
    )
    intensity_axes.set_ylabel("carbon intensity (gCO2/kWh)")
    known = [row.intensity for row in rows if row.intensity is not None]
    intensity_axes.set_ylim(0, max(known, default=100.0) * 1.15)
    total = total_row(rows, flavours=flavours)
    saving = "-" if total.saving is None else f"{100 * total.saving:.1f}%"
    mix_axes.set_title(
        f"carbonrouter demo: flavour mix against replayed GB carbon intensity (saved {saving})"
    )

    precision_axes.plot(positions, [row.avg_precision for row in rows], marker="o", label="average precision")
    precision_axes.plot(
        positions, [row.target_precision for row in rows], linestyle="--", color="grey", label="target"
    )
    precision_axes.set_ylabel("precision (0-100)")
    precision_axes.set_xlabel("replayed slot (trace time, UTC)")
    precision_axes.set_xticks(positions, [row.slot[5:16].replace("T", " ") or str(row.index) for row in rows])
    precision_axes.tick_params(axis="x", labelrotation=45)
    precision_axes.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
