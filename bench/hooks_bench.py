"""Latency of the sync hook for a three-flavour schedule, engine in-process.

    .venv/bin/python bench/hooks_bench.py [--requests N] [--warmup N]

Each measured call is one full sync: schema validation, flavour discovery,
the engine's `PUT /config` through its Flask test client, template
rendering and status. The request is the recorded steady-state fixture
(three flavours, children and status present), with the status of the
previous response fed back each time as Metacontroller would. Two figures
are printed: the `sync` function alone, and `POST /sync` through the hooks'
Flask app (JSON parsing and serialisation included). A third line clears
the spec and template caches before every call: the cost of a sync whose
spec, flavours or ceilings just changed. Each line gives wall-clock latency
and the process CPU time per call: on a shared, loaded machine the wall
figures include time spent waiting for a CPU. Target: wall p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hooks import children, spec  # noqa: E402
from hooks.app import create_app  # noqa: E402
from hooks.config import HookConfig  # noqa: E402
from hooks.engine_client import InProcessEngine  # noqa: E402
from hooks.sync import sync  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "hooks" / "sync-steady-state.json"
TARGET_P99_MS = 10.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def clear_render_caches() -> None:
    children._rendered_json.cache_clear()
    spec._checked_spec.cache_clear()


def measure_function(request: dict, *, engine, config: HookConfig, count: int,
                     cold: bool = False) -> list[tuple[float, float]]:
    samples = []
    for _ in range(count):
        if cold:
            clear_render_caches()
        started, cpu_started = time.perf_counter(), time.process_time()
        response = sync(request, engine=engine, config=config, now=datetime.now(UTC))
        samples.append(((time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000))
        request["parent"]["status"] = response["status"]
    return samples


def measure_app(request: dict, *, engine, config: HookConfig, count: int) -> list[tuple[float, float]]:
    client = create_app(config, engine=engine).test_client()
    samples = []
    for _ in range(count):
        body = json.dumps(request)
        started, cpu_started = time.perf_counter(), time.process_time()
        response = client.post("/sync", data=body, content_type="application/json")
        samples.append(((time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000))
        if response.status_code != 200:
            body_text = response.get_data(as_text=True)
            raise SystemExit(f"POST /sync returned HTTP {response.status_code}: {body_text}")
        request["parent"]["status"] = response.get_json()["status"]
    return samples


def report(label: str, samples: list[tuple[float, float]]) -> str:
    wall = [sample[0] for sample in samples]
    cpu = [sample[1] for sample in samples]
    return (f"{label:<34} n={len(samples):<5} wall p50={statistics.median(wall):6.2f} "
            f"p99={percentile(wall, 0.99):6.2f} max={max(wall):6.2f} ms | "
            f"cpu p50={statistics.median(cpu):5.2f} p99={percentile(cpu, 0.99):6.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000,
                        help="measured syncs per variant (default 1000)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured syncs first (default 100)")
    args = parser.parse_args(argv)

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    config = HookConfig()
    engine = InProcessEngine.create()
    request = json.loads(FIXTURE.read_text(encoding="utf-8"))
    measure_function(request, engine=engine, config=config, count=args.warmup)

    cold_samples = measure_function(request, engine=engine, config=config, count=args.requests, cold=True)
    function_samples = measure_function(request, engine=engine, config=config, count=args.requests)
    app_samples = measure_app(request, engine=engine, config=config, count=args.requests)
    print(f"# hooks sync latency, three flavours, engine in-process; Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load} before the run")
    print(report("sync() with empty render caches", cold_samples))
    print(report("sync() function", function_samples))
    print(report("POST /sync (Flask test client)", app_samples))
    verdicts = []
    for label, samples in (("sync()", function_samples), ("POST /sync", app_samples)):
        tail = percentile([sample[0] for sample in samples], 0.99)
        verdicts.append(f"{label} wall p99 {tail:.2f} ms {'met' if tail <= TARGET_P99_MS else 'MISSED'}")
    print(f"target p99 <= {TARGET_P99_MS:.0f} ms (steady resyncs): " + "; ".join(verdicts))
    return 0 if all(verdict.endswith("met") for verdict in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
