"""gunicorn settings for the router: `gunicorn -c buffer/gunicorn_router.py 'buffer.router:create_app()'`.

Each request spends its time waiting on the broker, so a worker serves many
at once. `ROUTER_WORKER_CLASS` picks how: `gevent_pywsgi` (the default) and
`gevent` run up to `ROUTER_WORKER_CONNECTIONS` requests as greenlets in one
thread, `gthread` runs them on `ROUTER_THREADS` threads. The gevent classes
cost less CPU per request, because no thread switches and no GIL hand-offs
happen between a request and its reply (docs/benchmarks.md has the figures).
Every worker process keeps one RabbitMQ connection, whatever the class.
The app is not preloaded, so each worker builds its own schedule refresher and
connection after the fork (and after gevent has patched the standard library).
On SIGTERM a worker gets `ROUTER_GRACEFUL_TIMEOUT` seconds (default
`REQUEST_TIMEOUT + 2`, rounded up) to finish its requests. SIGINT and SIGQUIT
are gunicorn's quick shutdown, which drops the requests in flight.
With `PROMETHEUS_MULTIPROC_DIR` set, `child_exit` drops a dead worker's live
gauges from the merged metrics.
"""

import logging
import math
import os

from buffer.config import BufferConfig, log_level

WORKER_CLASSES = ("gevent_pywsgi", "gevent", "gthread")
# gunicorn's worker class for each ROUTER_WORKER_CLASS value. gunicorn's own gevent_pywsgi
# worker never closes an idle keep-alive connection, so the router uses a subclass that does.
WORKER_CLASS_PATHS = {
    "gevent_pywsgi": "buffer.gevent_worker.RouterPyWSGIWorker",
    "gevent": "gevent",
    "gthread": "gthread",
}


def _count(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r} is invalid: set it to a whole number, 1 or more, or unset it")
    return int(raw)


def _worker_class() -> str:
    raw = os.environ.get("ROUTER_WORKER_CLASS", "").strip() or WORKER_CLASSES[0]
    if raw not in WORKER_CLASSES:
        raise ValueError(f"ROUTER_WORKER_CLASS={raw!r} is invalid: use one of {', '.join(WORKER_CLASSES)}")
    return raw


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name}={raw!r} is invalid: set it to a number of seconds, 0 or more, or unset it")
    return value


# An invalid setting stops gunicorn here, in the master, with one line naming
# it. Raised later, in a worker, it would print a traceback and make gunicorn
# report only that the worker failed to boot.
try:
    # The router logs one key=value line per event. pika's own tracebacks for the
    # same connection failures are hidden unless PIKA_LOG_LEVEL lowers the level.
    logging.basicConfig(
        level=log_level("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s",
    )
    logging.getLogger("pika").setLevel(log_level("PIKA_LOG_LEVEL", "CRITICAL"))

    bind = os.environ.get("ROUTER_BIND", "0.0.0.0:8000")
    # One gevent worker keeps one core busy. Give a pod more cores by raising this, or add pods.
    workers = _count("ROUTER_WORKERS", 1)
    worker_class = WORKER_CLASS_PATHS[_worker_class()]
    threads = _count("ROUTER_THREADS", 16)  # gthread only
    worker_connections = _count("ROUTER_WORKER_CONNECTIONS", 1000)  # gevent classes only

    # The whole configuration is checked here, in the master. Each worker reads it again in create_app().
    request_timeout = BufferConfig.from_env().request_timeout
    # gunicorn kills a worker that is silent for this long, so it must exceed the request timeout.
    timeout = int(request_timeout + 30)
    # Every request ends by its deadline, so a worker that is stopped needs the
    # request timeout plus 2 s to finish. The process that stops the router must wait longer.
    graceful_timeout = math.ceil(_seconds("ROUTER_GRACEFUL_TIMEOUT", request_timeout + 2))
except ValueError as error:  # ConfigError is a ValueError
    raise SystemExit(f"buffer router: invalid configuration: {error}") from None

keepalive = 5  # seconds an idle keep-alive connection stays open, under every worker class
accesslog = os.environ.get("ROUTER_ACCESS_LOG") or None
preload_app = False


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
