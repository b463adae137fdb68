"""gunicorn settings of the engine: ONE worker process with threads.

Sessions (ledger, cached decision, manual overrides) live in the worker's
memory, so a second worker would hold a different, diverging copy of every
schedule. Concurrency comes from threads instead; sessions are thread-safe.

Environment: `ENGINE_BIND` (default 127.0.0.1:8080), `ENGINE_THREADS`
(default 8), `ENGINE_LOG_LEVEL` (default info). When `PROMETHEUS_MULTIPROC_DIR`
is set, metrics are written there and merged at `/metrics`; the directory is
emptied at start and a dead worker's gauges are dropped.
"""

import os
import pathlib

from prometheus_client import multiprocess

bind = os.environ.get("ENGINE_BIND", "127.0.0.1:8080")
workers = 1  # sessions are in memory; see the module docstring before changing this
worker_class = "gthread"
threads = int(os.environ.get("ENGINE_THREADS", "8"))
timeout = 30
graceful_timeout = 10
loglevel = os.environ.get("ENGINE_LOG_LEVEL", "info")
accesslog = "-"
errorlog = "-"


def on_starting(server):
    """Empty the multiprocess metrics directory so counters of a previous run are not merged in."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """Drop the gauges of a worker that exited (prometheus-client multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
