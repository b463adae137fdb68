"""Benchmark: CPU time to evaluate 1,000 engine sessions.

Each session has three flavours (high/mid/low) and uses credit-greedy or
forecast-aware-global (half each). The carbon source is an in-process fake
serving 96 half-hour slots, so no provider I/O is measured, and the demand
forecast is off. The script configures the sessions, then times one
evaluation of every session (policy, integer weights, throttle, ceilings,
decision JSON) with `time.process_time`, over several rounds, and prints the
median and the worst round. Target: under 1 s of CPU per 1,000 sessions.

Run: `make bench-engine` or `.venv/bin/python bench/engine_bench.py [--sessions N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import EngineConfig  # noqa: E402
from engine.model import SLOT, CarbonSlot, CarbonSnapshot  # noqa: E402
from engine.policies import POLICIES  # noqa: E402
from engine.store import SessionStore  # noqa: E402
from engine.validation import validate_config  # noqa: E402

START = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
POLICY_MIX = ("credit-greedy", "forecast-aware-global")


class BenchSource:
    """Fake carbon source: a fixed daily-shaped curve of 96 slots, no I/O."""

    name = "bench"
    time_scale = 1.0

    def __init__(self) -> None:
        self.values = [110.0 + 80.0 * ((index % 48) / 47.0 - 0.5) ** 2 * 4 for index in range(192)]
        self._cached: CarbonSnapshot | None = None

    def source_now(self, wall_now: datetime) -> datetime:
        return wall_now

    def snapshot(self, now: datetime, *, horizon: timedelta) -> CarbonSnapshot:
        # Like the real sources, one snapshot object is shared by every session within a slot.
        first = START + ((now - START) // SLOT) * SLOT
        if self._cached is not None and self._cached.slots[0].start == first:
            return self._cached
        offset = int((first - START) / SLOT) % 96
        slots = tuple(CarbonSlot(start=first + index * SLOT, end=first + (index + 1) * SLOT,
                                 intensity=self.values[offset + index]) for index in range(96))
        self._cached = CarbonSnapshot(now=first, slots=slots, source=self.name)
        return self._cached


def schedule_body(policy: str) -> dict:
    return {
        "scheduler": {"policy": policy, "targetError": "0.1", "validFor": 60},
        "flavours": [{"name": "high", "precision": 100, "energy": 1.0},
                     {"name": "mid", "precision": 50, "energy": 0.6},
                     {"name": "low", "precision": 25, "energy": 0.3}],
        "componentBounds": {"router": {"min": 1, "max": 5}, "consumer": {"min": 1, "max": 5},
                            "target": {"min": 1, "max": 10}},
    }


def build_sessions(count: int, *, source=None):
    source = source or BenchSource()
    config = EngineConfig(source_factory=lambda target, **_: source, demand_forecast=False)
    store = SessionStore(config)
    sessions = []
    for index in range(count):
        body = schedule_body(POLICY_MIX[index % len(POLICY_MIX)])
        schedule = validate_config(body, policies=list(POLICIES))
        sessions.append(store.configure("bench", f"schedule-{index}", schedule))
    return sessions


def time_round(sessions, *, wall_now: datetime, spread: timedelta = timedelta(0)) -> float:
    """Evaluate every session once, session i at `wall_now + i * spread`.

    Rounds are 30 minutes apart, past every previous decision's validity. With
    `spread` of zero all sessions share one carbon snapshot per round; with a
    spread beyond the engine's one-second snapshot reuse, each builds its own.
    """
    started = time.process_time()
    for index, session in enumerate(sessions):
        session.decision(wall_now=wall_now + index * spread)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000, help="number of sessions (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--trace", action="store_true",
                        help="also time the bundled GB trace source (local files, no network)")
    args = parser.parse_args()
    logging.disable(logging.INFO)

    report(label="fake carbon source", sessions=build_sessions(args.sessions), rounds=args.rounds)
    if args.trace:
        from engine.carbon import build_source

        trace = build_source("trace", timeout=5.0, cache_ttl=300.0, settings={})
        trace.snapshot(START, horizon=timedelta(hours=48))  # load the files before timing
        report(label="bundled trace source", sessions=build_sessions(args.sessions, source=trace),
               rounds=args.rounds)
        report(label="bundled trace source, one snapshot per session",
               sessions=build_sessions(args.sessions, source=trace), rounds=args.rounds,
               spread=timedelta(seconds=1.5))


def report(*, label: str, sessions: list, rounds: int, spread: timedelta = timedelta(0)) -> None:
    timings = [time_round(sessions, wall_now=START + timedelta(minutes=30 * (round_index + 1)),
                          spread=spread)
               for round_index in range(rounds)]
    median = statistics.median(timings)
    print(f"engine: {len(sessions)} sessions ({' / '.join(POLICY_MIX)}, 3 flavours, {label})")
    print(f"  cpu per round: median {median:.3f} s, worst {max(timings):.3f} s over {rounds} rounds "
          f"({median / len(sessions) * 1e6:.0f} us per session); target < 1 s: "
          f"{'met' if median < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
