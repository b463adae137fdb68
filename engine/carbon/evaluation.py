"""Rolling-origin evaluation of carbon forecasts on a trace: our models, seasonal naive, the operator.

Each operator forecast snapshot in the trace is one origin. The origin slot is
the slot that contains the snapshot's `issued_at`, and a forecast slot's lead
is its start minus the origin slot's start (so the origin slot has lead 0,
as in the bundled trace's README). At each origin:

- every model is fitted only on actuals of slots that start before the origin slot;
- seasonal naive repeats the last 48 of those actuals;
- the operator forecast is the snapshot itself.

Only slots that all three forecast and that have an actual are scored, so
every method is compared on the same slots. Origins with less than two
days of history are skipped, because the seasonal models then fall back
to seasonal naive and would only repeat its score.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from engine.carbon.trace import Trace
from engine.forecast import forecast_series
from engine.model import SLOT

SEASON = 48
LEAD_BANDS = ((timedelta(hours=1), timedelta(hours=6)), (timedelta(hours=6), timedelta(hours=24)))
OPERATOR = "operator"
NAIVE = "seasonal-naive"


@dataclass
class Score:
    """Sum of absolute errors and count per lead band, for one forecaster."""

    abs_error: list[float] = field(default_factory=lambda: [0.0] * len(LEAD_BANDS))
    count: list[int] = field(default_factory=lambda: [0] * len(LEAD_BANDS))
    fit_seconds: list[float] = field(default_factory=list)  # wall time per fit
    fit_cpu_seconds: list[float] = field(default_factory=list)  # process CPU time per fit
    fallbacks: int = 0

    def mae(self, band: int) -> float:
        return self.abs_error[band] / self.count[band] if self.count[band] else float("nan")


@dataclass
class Evaluation:
    """Scores per forecaster name, and the origins used."""

    scores: dict[str, Score]
    origins: int


def evaluate_trace(trace: Trace, *, models: Sequence[str] = ("holt-winters", "stl-ets")) -> Evaluation:
    """Score `models`, seasonal naive and the operator forecast at every usable origin of `trace`."""
    names = [*models, NAIVE, OPERATOR]
    scores = {name: Score() for name in names}
    horizon = int(max(end for _, end in LEAD_BANDS) / SLOT)
    origins = 0

    for snapshot in trace.forecasts:
        origin = int((snapshot.issued_at - trace.first) // SLOT)
        if origin < 2 * SEASON:
            continue
        history = trace.actuals[:origin]
        predictions = {OPERATOR: _operator_values(trace, snapshot.values, origin=origin, horizon=horizon)}
        for name in [*models, NAIVE]:
            started, started_cpu = time.perf_counter(), time.process_time()
            forecast = forecast_series(history, horizon=horizon, season=SEASON, model=name)
            scores[name].fit_seconds.append(time.perf_counter() - started)
            scores[name].fit_cpu_seconds.append(time.process_time() - started_cpu)
            scores[name].fallbacks += forecast.model != name
            predictions[name] = list(forecast.values)
        origins += 1
        _score_origin(trace, scores, predictions, origin=origin)
    return Evaluation(scores=scores, origins=origins)


def _operator_values(trace: Trace, values: dict, *, origin: int, horizon: int) -> list[float | None]:
    start = trace.first + SLOT * origin
    return [values.get(start + SLOT * lead) for lead in range(horizon)]


def _score_origin(
    trace: Trace, scores: dict[str, Score], predictions: dict[str, list], *, origin: int
) -> None:
    for lead_index in range(len(predictions[OPERATOR])):
        slot = origin + lead_index
        band = _band_of(SLOT * lead_index)
        if band is None or slot >= len(trace.actuals):
            continue
        if any(p[lead_index] is None for p in predictions.values()):
            continue
        actual = trace.actuals[slot]
        for name, values in predictions.items():
            scores[name].abs_error[band] += abs(values[lead_index] - actual)
            scores[name].count[band] += 1


def _band_of(lead: timedelta) -> int | None:
    for index, (low, high) in enumerate(LEAD_BANDS):
        if low <= lead < high:
            return index
    return None
