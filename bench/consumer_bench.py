"""Benchmark: CPU time and context switches per request of the consumer alone.

The buffer benchmark (`bench/buffer_bench.py`) measures every component at
once, so the router's and the load generator's load moves the consumer's
figure. This script leaves the router out. It starts carbonstat's `high`
flavour under gunicorn and one consumer process (`python -m buffer.consumer`)
against the RabbitMQ at RABBITMQ_URL (default 127.0.0.1:5672). A pika client
in this process publishes `POST /avg` requests with 100 numbers straight into
the flavour queue and keeps `--outstanding` of them in flight: each reply
triggers the next request. After a warm-up the script reads the consumer's
CPU time and its threads' voluntary and involuntary context switches from
/proc (Linux only) over `--duration` seconds, and divides them by the
replies received.

`--source DIR` runs the consumer from another checkout's `buffer/` package,
so two versions can be compared on one machine, for example:

    git archive <commit> buffer | tar -x -C /tmp/old
    .venv/bin/python bench/consumer_bench.py --source /tmp/old

With `--source` the runs alternate between that checkout and this one.
A checkout from before message format version 2 dead-letters version 2
requests, so compare it with `--format-version 1`.
The publisher, the flavour and the consumer share the machine's cores.

Run: `.venv/bin/python bench/consumer_bench.py [--runs N] [--duration S]`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pika
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from buffer.config import DEFAULT_RABBITMQ_URL, BufferConfig, FlavourSpec  # noqa: E402
from buffer.messages import FORMAT_VERSION, RelayedRequest, request_headers_table  # noqa: E402
from buffer.topology import declare_topology, delete_topology  # noqa: E402

PAYLOAD = json.dumps({"numbers": list(range(100))}).encode()
REPLY_TO = "amq.rabbitmq.reply-to"
WARM_UP = 2.0  # seconds of load before the measurement starts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_counters(pid: int) -> tuple[float, int]:
    """Return the CPU seconds and the context switches of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    switches = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    return cpu_seconds, switches


def start_flavour(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "2"]
        + ["-k", "gthread", "--threads", "8", "carbonstat.app:create_app()"],
        cwd=ROOT,
        env=dict(os.environ, CARBONSTAT_FLAVOUR="high"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"the flavour did not become healthy on port {port} within 30 s")


def measure(args: argparse.Namespace, *, source: Path, flavour_port: int) -> dict:
    """Run one consumer from `source` under load and return its figures per request."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    config = BufferConfig(
        flavours=(FlavourSpec("high", 100),),
        namespace=namespace,
        rabbitmq_url=args.rabbitmq_url,
        prefetch=args.prefetch,
    )
    env = dict(
        os.environ,
        FLAVOURS="high:100",
        SCHEDULE_NAMESPACE=namespace,
        RABBITMQ_URL=args.rabbitmq_url,
        ENGINE_URL="",
        FLAVOUR_URLS=f"high=http://127.0.0.1:{flavour_port}",
        CONSUMER_PREFETCH=str(args.prefetch),
        LOG_LEVEL="WARNING",
    )
    connection = pika.BlockingConnection(pika.URLParameters(args.rabbitmq_url))
    channel = connection.channel()
    declare_topology(channel, config)
    consumer = subprocess.Popen([sys.executable, "-m", "buffer.consumer"], cwd=source, env=env)
    queue = config.queue_for(config.flavours[0])
    replies = 0

    def publish() -> None:
        request = RelayedRequest(
            method="POST",
            path="/avg",
            query="",
            headers=(("Content-Type", "application/json"),),
            body=PAYLOAD,
            flavour="high",
            deadline_ms=int((time.time() + 30) * 1000),
        )
        properties = pika.BasicProperties(
            reply_to=REPLY_TO,
            correlation_id=uuid.uuid4().hex,
            headers=request_headers_table(request, version=args.format_version),
        )
        channel.basic_publish("", queue, PAYLOAD, properties)

    def on_reply(channel, method, properties, body) -> None:
        nonlocal replies
        replies += 1
        publish()

    def pump(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)

    try:
        channel.basic_consume(REPLY_TO, on_reply, auto_ack=True)
        for _ in range(args.outstanding):
            publish()
        pump(WARM_UP)
        cpu_before, switches_before = process_counters(consumer.pid)
        replies_before, started = replies, time.monotonic()
        pump(args.duration)
        cpu_after, switches_after = process_counters(consumer.pid)
        count, elapsed = replies - replies_before, time.monotonic() - started
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
        delete_topology(channel, config)
        connection.close()
    if count == 0:
        raise SystemExit(f"the consumer from {source} sent no reply in {args.duration} s")
    return {
        "cpu_ms": (cpu_after - cpu_before) / count * 1000,
        "switches": (switches_after - switches_before) / count,
        "throughput": count / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per consumer (default 3)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run (default 8)")
    parser.add_argument(
        "--outstanding", type=int, default=64, help="requests kept in flight by the publisher (default 64)"
    )
    parser.add_argument("--prefetch", type=int, default=32, help="consumer prefetch (default 32)")
    parser.add_argument(
        "--source", type=Path, help="checkout whose buffer/ package the compared consumer runs from"
    )
    parser.add_argument(
        "--format-version",
        type=int,
        choices=(1, 2),
        default=FORMAT_VERSION,
        help=f"message format version of the published requests (default {FORMAT_VERSION})",
    )
    parser.add_argument(
        "--rabbitmq-url", default=os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ_URL), help="broker URL"
    )
    args = parser.parse_args()

    sources = [ROOT] if args.source is None else [args.source.resolve(), ROOT]
    flavour_port = free_port()
    flavour = start_flavour(flavour_port)
    results: dict[Path, list[dict]] = {source: [] for source in sources}
    try:
        for _ in range(args.runs):
            for source in sources:
                figures = measure(args, source=source, flavour_port=flavour_port)
                results[source].append(figures)
                print(
                    f"{source}: {figures['cpu_ms']:.3f} ms CPU, {figures['switches']:.1f} context "
                    f"switches per request, {figures['throughput']:.0f} requests/s",
                    flush=True,
                )
    finally:
        flavour.terminate()
        flavour.wait(timeout=30)

    print(f"\n{args.outstanding} requests outstanding, prefetch {args.prefetch}, {args.duration} s per run")
    print("| consumer from | CPU ms per request (median, range) | context switches per request | req/s |")
    print("|---|---|---|---|")
    for source, runs in results.items():
        cpu = [run["cpu_ms"] for run in runs]
        print(
            f"| {source} | {statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f}) "
            f"| {statistics.median(run['switches'] for run in runs):.1f} "
            f"| {statistics.median(run['throughput'] for run in runs):.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
