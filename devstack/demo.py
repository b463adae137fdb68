"""The `demo` command: send traffic through the router and report how the mix follows carbon.

It uses the stack a running `devstack run` recorded in its state file, or
starts one for the length of the demo. Client threads send `POST /avg` at a
steady rate. A sampler thread reads the engine's decision every second, so
each successful response is paired with the intensity in force when it
arrived. Every interval (by default one replayed slot) the report prints a
row, and at the end it writes `out/demo-<time>.csv` and `out/demo-<time>.png`.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import requests

from devstack.processes import StartError, Supervisor
from devstack.registration import ENERGY_ANNOTATION, RegistrationError, flavour_name, load_example
from devstack.report import (
    IntervalRow,
    Sample,
    aggregate,
    table_header,
    table_line,
    total_row,
    write_chart,
    write_csv,
)
from devstack.settings import FLAVOUR_NAMES, StackSettings
from devstack.stack import (
    Interrupted,
    PreflightError,
    _raise_interrupted,
    delete_per_run_queues,
    preflight,
    start_stack,
)
from devstack.status import NotRunning, fetch_decision, read_state

SLOT_SECONDS = 1800.0
CLIENT_THREADS = 8


@dataclass
class DecisionSample:
    """The engine's decision at one moment of the demo."""

    at: float
    intensity: float | None
    slot: str
    weights: dict[str, int]
    target_error: float | None


class DecisionSampler:
    """Reads the engine's decision once a second in a background thread."""

    def __init__(self, engine_url: str, key: str, started: float):
        self.engine_url = engine_url
        self.key = key
        self.started = started
        self.samples: list[DecisionSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-sampler", daemon=True)

    def start(self) -> None:
        self.sample_once()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample_once(self) -> None:
        decision = fetch_decision(self.engine_url, self.key)
        if decision is None:
            return
        carbon = decision.get("carbon") or {}
        slots = carbon.get("slots") or [{}]
        sample = DecisionSample(
            at=time.monotonic() - self.started,
            intensity=carbon.get("now"),
            slot=str(slots[0].get("from", "")),
            weights=dict(decision.get("flavourWeights") or {}),
            target_error=(decision.get("credits") or {}).get("target"),
        )
        with self._lock:
            self.samples.append(sample)

    def latest(self) -> DecisionSample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.sample_once()


def send_one(session: requests.Session, url: str) -> tuple[str, float] | None:
    """Send one request with random numbers; return (flavour, precision) or None on an error."""
    numbers = [random.randint(0, 1000) for _ in range(64)]
    try:
        response = session.post(url, json={"numbers": numbers}, timeout=30)
        body = response.json()
        if response.status_code != 200:
            return None
        return body["flavour"], float(body["precision"])
    except (requests.RequestException, ValueError, KeyError):
        return None


class Traffic:
    """Requests sent at a steady rate from a thread pool, recorded as samples."""

    def __init__(self, *, router_url: str, sampler: DecisionSampler, started: float):
        self.router_url = router_url
        self.sampler = sampler
        self.started = started
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def run(self, *, duration: float, rate: float) -> None:
        """Send `rate` requests per second for `duration` seconds, then wait for every response."""
        deadline = self.started + duration
        with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
            scheduled = self.started
            while scheduled < deadline:
                # Submit at most one second ahead of schedule, so the pool's queue does not
                # hold the whole run at once. A slow router still lets unsent requests queue up.
                while scheduled > time.monotonic() + 1.0:
                    time.sleep(0.05)
                pool.submit(self._send, scheduled)
                scheduled += 1.0 / rate

    def _send(self, scheduled: float) -> None:
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        result = send_one(self._local.session, self.router_url + "/avg")
        latest = self.sampler.latest()
        intensity = latest.intensity if latest else None
        now = time.monotonic() - self.started
        if result:
            sample = Sample(at=now, flavour=result[0], precision=result[1], intensity=intensity)
        else:
            sample = Sample(at=now, flavour="", precision=0.0, intensity=intensity, ok=False)
        with self._lock:
            self.samples.append(sample)


def demo(
    settings: StackSettings, *, minutes: float, interval: float | None, rate: float, out_dir: str
) -> int:
    """Run the demo against a running stack, or start one for its duration."""
    try:
        state = read_state(settings.state_file)
    except NotRunning:
        state = None
    if state:
        # The running stack's schedule may differ from this command's options,
        # because --free-ports picks a namespace per run.
        namespace, _, name = state["schedule"].partition("/")
        settings = replace(
            settings,
            ports=dict(state["ports"]),
            speed_up=float(state.get("speedUp", settings.speed_up)),
            namespace=namespace,
            name=name,
        )
        print(f"demo: using the running stack (router {settings.url('router')})", flush=True)
        return report(settings, minutes=minutes, interval=interval, rate=rate, out_dir=Path(out_dir))

    print("demo: no running stack found, starting one for the demo", flush=True)
    try:
        preflight(settings)
    except PreflightError as exc:
        print(f"demo: cannot start the local stack:\n{exc}", file=sys.stderr)
        return 2
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(log_dir=settings.log_dir)
    registrar = None
    try:
        registrar = start_stack(settings, supervisor)
        return report(settings, minutes=minutes, interval=interval, rate=rate, out_dir=Path(out_dir))
    except Interrupted:
        print("\ndemo: interrupted, stopping the stack", file=sys.stderr)
        return 130
    except (StartError, RegistrationError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if registrar:
            registrar.stop()
        supervisor.stop_all()
        delete_per_run_queues(settings)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def report(
    settings: StackSettings, *, minutes: float, interval: float | None, rate: float, out_dir: Path
) -> int:
    """Drive traffic and print one row per interval, then write the CSV and the chart."""
    example = load_example(settings)
    energy = {
        flavour_name(deployment): float(
            deployment["metadata"].get("annotations", {}).get(ENERGY_ANNOTATION, 1.0)
        )
        for deployment in example.deployments
    }
    flavours = list(FLAVOUR_NAMES)
    interval = interval or SLOT_SECONDS / settings.speed_up
    duration = minutes * 60.0
    print(
        f"demo: {minutes:g} min at {rate:g} requests/s, one row per {interval:g} s; "
        f"energy per request relative to high: {energy}",
        flush=True,
    )
    print(table_header(flavours), flush=True)

    started = time.monotonic()
    sampler = DecisionSampler(settings.url("engine"), f"{settings.namespace}/{settings.name}", started)
    sampler.start()
    traffic = Traffic(router_url=settings.url("router"), sampler=sampler, started=started)
    sender = threading.Thread(target=traffic.run, kwargs={"duration": duration, "rate": rate}, daemon=True)
    sender.start()

    # Print each row a second after its interval ends, from the samples recorded so far.
    bounds = []
    while len(bounds) * interval < duration:
        bounds.append((len(bounds) * interval, min((len(bounds) + 1) * interval, duration)))
    for index, (start, end) in enumerate(bounds):
        time.sleep(max(0.0, started + end + 1.0 - time.monotonic()))
        row = interval_row(traffic.snapshot(), sampler, bounds=(start, end), index=index, energy=energy)
        print(table_line(row, flavours), flush=True)
    sender.join()
    sampler.stop()

    # Late responses may land in an interval already printed, so the files use the final samples.
    final = traffic.snapshot()
    rows = [
        interval_row(final, sampler, bounds=bound, index=index, energy=energy)
        for index, bound in enumerate(bounds)
    ]
    return write_outputs(rows, out_dir=out_dir)


def write_outputs(rows: list[IntervalRow], *, out_dir: Path) -> int:
    """Print the total row and summary, then write the CSV and the chart. Return 1 if no request succeeded."""
    flavours = list(FLAVOUR_NAMES)
    total = total_row(rows, flavours=flavours)
    print(table_line(total, flavours), flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path = out_dir / f"demo-{stamp}.csv"
    png_path = out_dir / f"demo-{stamp}.png"
    write_csv(csv_path, rows, flavours=flavours)
    write_chart(png_path, rows, flavours=flavours)
    saving = "-" if total.saving is None else f"{100 * total.saving:.1f}%"
    print(
        f"demo: {total.requests} succeeded, {total.errors} failed; average precision "
        f"{total.avg_precision or 0:.1f} against a target of {total.target_precision or 0:.1f}; "
        f"estimated emissions {saving} below sending everything to high.\n"
        f"demo: wrote {csv_path} and {png_path}",
        flush=True,
    )
    return 0 if total.requests else 1


def interval_row(
    samples: list[Sample], sampler: DecisionSampler, *, bounds: tuple[float, float], index: int, energy: dict
) -> IntervalRow:
    """Build one report row and add the engine's decisions sampled during the interval."""
    start, end = bounds
    row = aggregate(samples, start=start, end=end, index=index, energy=energy, flavours=list(FLAVOUR_NAMES))
    decisions = [sample for sample in sampler.samples if start <= sample.at < end]
    if decisions:
        last = decisions[-1]
        row.slot = last.slot[:16]
        # Weights can move within an interval (the credit balance changes), so the row
        # shows their mean over the once-a-second samples, comparable to the observed mix.
        row.weights = {
            name: round(sum(sample.weights.get(name, 0) for sample in decisions) / len(decisions))
            for name in FLAVOUR_NAMES
        }
        if last.target_error is not None:
            row.target_precision = 100.0 * (1.0 - float(last.target_error))
        if row.intensity is None:
            row.intensity = last.intensity
    return row
