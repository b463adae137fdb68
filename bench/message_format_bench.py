"""Benchmark: CPU time to encode and decode one buffer message, per format version.

Each step does what the real path does with the AMQP properties of a
message, without a broker. Encoding builds the header table, the
`pika.BasicProperties` and the marshalled content-header frame, as pika's
`basic_publish` does. Decoding parses that frame, as pika does on delivery,
and rebuilds the request or response from its properties. The bodies and
HTTP headers are those of a small JSON `POST` through the router. Only the
header frame is measured, because the body frames are the same in both
versions.

The script alternates the versions within one process, several rounds each,
and prints the best time per message of every step in microseconds, with
the size of the header frame. Run it alone, for example under
`flock /tmp/bench.lock`, because other load on the machine moves the figures.

Run: `.venv/bin/python bench/message_format_bench.py [--rounds N] [--number N]`.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from pathlib import Path

import pika
from pika import frame

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buffer.messages import (  # noqa: E402
    RelayedRequest,
    RelayedResponse,
    decode_request,
    decode_response,
    request_headers_table,
    response_headers_table,
)

BODY = b'{"numbers": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}'
REQUEST = RelayedRequest(
    method="POST",
    path="/avg",
    query="",
    headers=(
        ("User-Agent", "python-requests/2.31.0"),
        ("Accept-Encoding", "gzip, deflate"),
        ("Accept", "*/*"),
        ("Content-Type", "application/json"),
    ),
    body=BODY,
    flavour="high",
    deadline_ms=int((time.time() + 30) * 1000),
)
RESPONSE = RelayedResponse(
    status=200,
    headers=(
        ("Server", "gunicorn"),
        ("Date", "Fri, 04 Dec 2026 10:00:00 GMT"),
        ("Content-Type", "application/json"),
    ),
    body=BODY,
    flavour="high",
)
CORRELATION_ID = "8f14e45fceea167a5a36dedd4bea2543"  # as long as the router's uuid4().hex


def encode_request(version: int) -> bytes:
    properties = pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        reply_to="amq.rabbitmq.reply-to",
        correlation_id=CORRELATION_ID,
        headers=request_headers_table(REQUEST, version=version),
    )
    return frame.Header(1, len(BODY), properties).marshal()


def encode_response(version: int) -> bytes:
    properties = pika.BasicProperties(
        correlation_id=CORRELATION_ID, headers=response_headers_table(RESPONSE, version=version)
    )
    return frame.Header(1, len(BODY), properties).marshal()


def decode_request_frame(data: bytes) -> RelayedRequest:
    return decode_request(frame.decode_frame(data)[1].properties, BODY)


def decode_response_frame(data: bytes) -> RelayedResponse:
    return decode_response(frame.decode_frame(data)[1].properties, BODY)


def steps(version: int) -> dict:
    """Return the benchmarked steps of one format version, after checking that they round-trip."""
    request_frame, response_frame = encode_request(version), encode_response(version)
    if decode_request_frame(request_frame).path != REQUEST.path:
        raise SystemExit(f"version {version} request did not round-trip")
    if decode_response_frame(response_frame) != RESPONSE:
        raise SystemExit(f"version {version} response did not round-trip")
    return {
        "request encode": (lambda: encode_request(version), len(request_frame)),
        "request decode": (lambda: decode_request_frame(request_frame), len(request_frame)),
        "reply encode": (lambda: encode_response(version), len(response_frame)),
        "reply decode": (lambda: decode_response_frame(response_frame), len(response_frame)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per version (default 5)")
    parser.add_argument("--number", type=int, default=20000, help="messages per timed loop (default 20000)")
    args = parser.parse_args()

    versions = (1, 2)
    best: dict[tuple[int, str], float] = {}
    sizes: dict[tuple[int, str], int] = {}
    for _ in range(args.rounds):
        for version in versions:
            for name, (step, size) in steps(version).items():
                seconds = timeit.timeit(step, number=args.number) / args.number
                best[version, name] = min(best.get((version, name), seconds), seconds)
                sizes[version, name] = size

    print(f"best of {args.rounds} rounds of {args.number} messages, µs per message")
    print("| step | header frame bytes (v1, v2) | version 1 µs | version 2 µs |")
    print("|---|---|---|---|")
    names = list(steps(versions[0]))
    for name in names:
        print(
            f"| {name} | {sizes[1, name]}, {sizes[2, name]} "
            f"| {best[1, name] * 1e6:.2f} | {best[2, name] * 1e6:.2f} |"
        )
    totals = [sum(best[version, name] for name in names) * 1e6 for version in versions]
    print(f"| round trip (all four) | | {totals[0]:.2f} | {totals[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
