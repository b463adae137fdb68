"""Benchmark: throughput and latency through the buffer against calling the flavour directly.

The script starts carbonstat's `high` flavour under gunicorn, the router under
gunicorn and one or more consumers on loopback, all against the RabbitMQ at
RABBITMQ_URL (default 127.0.0.1:5672). No engine runs, so the router sends
every request to its fallback, the most precise flavour, and both paths reach
the same flavour server. Clients send `POST /avg` with 100 numbers in closed
loops (each client sends its next request when the previous one returns),
each over one keep-alive connection. The default client is `http.client`,
which costs about 0.15 ms of CPU per request. `--client requests` uses a
`requests.Session` at about 0.8 ms, which on two cores makes the load
generator the direct path's bottleneck. Each run has two phases:

1. `--clients` concurrent clients (default 64, spread over several client
   processes so the load generator is not held back by one GIL), directly to
   the flavour and through the router;
2. one client on each path, which gives the latency the buffer adds to a
   single request when nothing queues.

Each phase lasts `--duration` seconds in total, split into `--rounds` slices
that alternate between the direct and the buffered path, so changes in the
machine's other load hit both paths alike. CPU time per request of every
component is read from /proc over the concurrent slices (Linux only). The
broker's figure includes whatever else uses the shared broker meanwhile.

It prints throughput and p50/p99 latency of each phase, the buffered/direct
throughput ratio and the added p50 latency, as a Markdown table. Every process
runs on the same machine, so the load generator competes with the servers
for CPU.

Run: `make bench-buffer` or `.venv/bin/python bench/buffer_bench.py [--duration S] [--clients N]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pika
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from buffer.config import BufferConfig  # noqa: E402
from buffer.topology import delete_topology  # noqa: E402

PAYLOAD = json.dumps({"numbers": list(range(100))}).encode()
HEADERS = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(
        f"benchmark: {url} did not become healthy within {timeout:.0f} s. Check the logs in out/bench/"
    )


def process_tree(root: int) -> list[int]:
    """Return `root` and every descendant process id, read from /proc (Linux only)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """Return the user + system CPU seconds used so far by the given processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def broker_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def requests_sender(url: str):
    """Return a function that posts the payload over one keep-alive `requests.Session`."""
    session = requests.Session()

    def send() -> bool:
        try:
            return session.post(url, data=PAYLOAD, headers=HEADERS, timeout=30).status_code == 200
        except requests.RequestException:
            return False

    return send


def http_client_sender(url: str):
    """Return a function that posts the payload over one keep-alive `http.client` connection.

    It costs the load generator less CPU per request than requests, so more of
    the machine is left to the servers under test.
    """
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def send() -> bool:
        try:
            connection.request("POST", parts.path, body=PAYLOAD, headers=HEADERS)
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            connection.close()  # the next request reconnects
            return False

    return send


SENDERS = {"requests": requests_sender, "http.client": http_client_sender}


def client_process(url: str, threads: int, duration: float, results, client: str = "requests") -> None:
    """Run `threads` closed-loop clients for `duration` seconds; put (latencies, errors) on `results`."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def loop() -> None:
        send = SENDERS[client](url)
        local, failed = [], 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            ok = send()
            if ok:
                local.append(time.perf_counter() - started)
            else:
                failed += 1
        with lock:
            latencies.extend(local)
            errors[0] += failed

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    usage = os.times()
    results.put((latencies, errors[0], usage.user + usage.system))


def run_phase(
    url: str, *, clients: int, processes: int, duration: float, components=None, client: str = "requests"
) -> dict:
    """Drive `clients` closed-loop clients over `processes` processes and summarise latencies.

    `components` maps a name to process ids whose CPU time is measured over the phase.
    """
    components = components or {}
    cpu_before = {name: cpu_seconds(pids) for name, pids in components.items()}
    processes = max(1, min(processes, clients))
    results = multiprocessing.Queue()
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    workers = [
        multiprocessing.Process(target=client_process, args=(url, share, duration, results, client))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    latencies, errors, client_cpu = [], 0, 0.0
    for _ in workers:
        part, failed, used = results.get()
        latencies.extend(part)
        errors += failed
        client_cpu += used
    for worker in workers:
        worker.join()
    cpu = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in components.items()}
    cpu["load generator"] = client_cpu
    return {"latencies": latencies, "errors": errors, "cpu": cpu, "duration": duration}


def summarise(slices: list[dict]) -> dict:
    """Merge the slices of one phase into throughput, percentiles and CPU per request."""
    latencies = sorted(latency for part in slices for latency in part["latencies"])
    errors = sum(part["errors"] for part in slices)
    duration = sum(part["duration"] for part in slices)
    if not latencies:
        raise SystemExit(f"benchmark: no request succeeded ({errors} errors)")
    cpu: dict[str, float] = {}
    for part in slices:
        for name, used in part["cpu"].items():
            cpu[name] = cpu.get(name, 0.0) + used
    return {
        "throughput": len(latencies) / duration,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "requests": len(latencies),
        "errors": errors,
        "cpu_ms_per_request": {name: used * 1000 / len(latencies) for name, used in cpu.items()},
    }


class Stack:
    """The flavour, router and consumer processes of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.log_dir = ROOT / "out" / "bench"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.flavour_port, self.router_port = free_port(), free_port()
        self.processes: list[subprocess.Popen] = []
        self.env = dict(
            os.environ,
            FLAVOURS="high:100,mid:50,low:25",
            SCHEDULE_NAMESPACE=self.namespace,
            SCHEDULE_NAME="carbonstat",
            SERVICE_NAME="carbonstat",
            ENGINE_URL="",
            FLAVOUR_URLS=f"high=http://127.0.0.1:{self.flavour_port}",
            CONSUMER_PREFETCH=str(args.prefetch),
            REQUEST_TIMEOUT="30",
            ROUTER_BIND=f"127.0.0.1:{self.router_port}",
            ROUTER_WORKERS=str(args.router_workers),
            ROUTER_THREADS=str(args.router_threads),
            ROUTER_WORKER_CLASS=args.router_worker_class,
            LOG_LEVEL="WARNING",
            CARBONSTAT_FLAVOUR="high",
        )

    def start(self) -> None:
        gunicorn = [sys.executable, "-m", "gunicorn"]
        self._spawn(
            "flavour",
            gunicorn
            + ["-b", f"127.0.0.1:{self.flavour_port}", "-w", str(self.args.flavour_workers)]
            + ["-k", self.args.flavour_worker_class, "--threads", str(self.args.flavour_threads)]
            + ["carbonstat.app:create_app()"],
        )
        self._spawn("router", gunicorn + ["-c", "buffer/gunicorn_router.py", "buffer.router:create_app()"])
        for index in range(self.args.consumers):
            self._spawn(f"consumer{index}", [sys.executable, "-m", "buffer.consumer"])
        wait_until_healthy(f"http://127.0.0.1:{self.flavour_port}/healthz")
        wait_until_healthy(f"http://127.0.0.1:{self.router_port}/healthz")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        config = BufferConfig.from_env(self.env)
        connection = pika.BlockingConnection(pika.URLParameters(config.rabbitmq_url))
        try:
            delete_topology(connection.channel(), config)
        finally:
            connection.close()

    def components(self) -> dict[str, list[int]]:
        """Process ids per component: flavour, router, consumer (with their workers) and the broker."""
        flavour, router, *consumers = self.processes
        return {
            "flavour": process_tree(flavour.pid),
            "router": process_tree(router.pid),
            "consumer": [pid for process in consumers for pid in process_tree(process.pid)],
            "broker (shared)": broker_pids(),
        }

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.log_dir / f"buffer-{name}.log", "wb")
        self.processes.append(
            subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        )


def router_shape(args: argparse.Namespace) -> str:
    if args.router_worker_class == "gthread":
        return f"{args.router_workers}x{args.router_threads} threads (gthread)"
    return f"{args.router_workers} {args.router_worker_class} worker(s)"


def report(rows: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        "| phase | clients | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        clients = args.clients if "concurrent" in name else 1
        lines.append(
            f"| {name} | {clients} | {row['requests']} | {row['errors']} | {row['throughput']:.0f} "
            f"| {row['p50']:.2f} | {row['p99']:.2f} |"
        )
    ratio = rows["buffered, concurrent"]["throughput"] / rows["direct, concurrent"]["throughput"]
    added_single = rows["buffered, one client"]["p50"] - rows["direct, one client"]["p50"]
    added_loaded = rows["buffered, concurrent"]["p50"] - rows["direct, concurrent"]["p50"]
    lines += ["", "CPU time per request (ms), with concurrent clients:", ""]
    names = list(rows["buffered, concurrent"]["cpu_ms_per_request"])
    lines += ["| path | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name in ("direct, concurrent", "buffered, concurrent"):
        cpu = rows[name]["cpu_ms_per_request"]
        lines.append(f"| {name.split(',')[0]} | " + " | ".join(f"{cpu[n]:.2f}" for n in names) + " |")
    lines += [
        "",
        f"buffered/direct throughput with {args.clients} clients: {ratio:.3f} (target at least 1/3, aim 0.5)",
        f"p50 latency added by the buffer, one client: {added_single:.2f} ms (target <= 3 ms)",
        f"p50 latency added by the buffer, {args.clients} clients: {added_loaded:.2f} ms",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=15.0,
        help="seconds per phase, split over the rounds (default 15)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/buffered rounds")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--client-processes", type=int, default=4, help="load generator processes")
    parser.add_argument(
        "--client",
        choices=sorted(SENDERS),
        default="http.client",
        help="HTTP client of the load generator, the same on both paths (default http.client)",
    )
    parser.add_argument(
        "--router-workers", type=int, default=1, help="router gunicorn workers (default 1, as in production)"
    )
    parser.add_argument(
        "--router-worker-class",
        choices=("gevent_pywsgi", "gevent", "gthread"),
        default="gevent_pywsgi",
        help="gunicorn worker class of the router (default gevent_pywsgi, as in production)",
    )
    parser.add_argument(
        "--router-threads", type=int, default=16, help="threads per router worker, gthread only"
    )
    parser.add_argument("--consumers", type=int, default=1, help="consumer processes")
    parser.add_argument("--prefetch", type=int, default=32, help="consumer prefetch")
    parser.add_argument("--flavour-workers", type=int, default=2, help="flavour gunicorn workers")
    parser.add_argument(
        "--flavour-worker-class",
        choices=("gthread", "gevent"),
        default="gthread",
        help="gunicorn worker class of the flavour (default gthread, as in carbonstat's image)",
    )
    parser.add_argument(
        "--flavour-threads", type=int, default=8, help="threads per flavour worker, gthread only"
    )
    args = parser.parse_args()

    stack = Stack(args)
    try:
        stack.start()
        direct = f"http://127.0.0.1:{stack.flavour_port}/avg"
        buffered = f"http://127.0.0.1:{stack.router_port}/avg"
        run_phase(buffered, clients=8, processes=2, duration=2.0)  # warm connections and caches
        components = stack.components()
        slices: dict[str, list[dict]] = {}
        # Direct and buffered slices alternate, so a change in the machine's
        # other load during the run affects both paths alike.
        slice_seconds = args.duration / args.rounds
        load_before = os.getloadavg()[0]
        for _ in range(args.rounds):
            for name, url in (("direct", direct), ("buffered", buffered)):
                part = run_phase(
                    url,
                    clients=args.clients,
                    processes=args.client_processes,
                    duration=slice_seconds,
                    components=components,
                    client=args.client,
                )
                slices.setdefault(f"{name}, concurrent", []).append(part)
            for name, url in (("direct", direct), ("buffered", buffered)):
                part = run_phase(url, clients=1, processes=1, duration=slice_seconds, client=args.client)
                slices.setdefault(f"{name}, one client", []).append(part)
        load_after = os.getloadavg()[0]
    finally:
        stack.stop()
    rows = {name: summarise(parts) for name, parts in slices.items()}
    print(
        f"Buffer benchmark: {os.cpu_count()} CPUs, {args.duration:g} s per phase, router "
        f"{router_shape(args)}, {args.consumers} consumer(s) with "
        f"prefetch {args.prefetch}, flavour {args.flavour_workers}x{args.flavour_threads} threads "
        f"({args.flavour_worker_class}), "
        f"{args.rounds} alternating rounds, {args.client} clients; "
        f"1-minute load average {load_before:.1f} before, {load_after:.1f} after\n"
    )
    print(report(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
