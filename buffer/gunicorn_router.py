"""gunicorn settings for the router: `gunicorn -c buffer/gunicorn_router.py 'buffer.router:create_app()'`.

Threaded workers (`gthread`) fit the router, because each request spends its
time waiting on the broker. Every thread opens its own RabbitMQ connection
on first use, so a router worker process keeps up to `ROUTER_THREADS` connections.
The app is not preloaded, so each worker builds its own schedule refresher
after the fork. On SIGTERM or SIGINT a worker gets `ROUTER_GRACEFUL_TIMEOUT`
seconds (default `REQUEST_TIMEOUT + 2`, rounded up) to finish its requests.
With `PROMETHEUS_MULTIPROC_DIR` set, `child_exit` drops a dead worker's live
gauges from the merged metrics.
"""

import logging
import math
import os

# The router logs one key=value line per event. pika's own tracebacks for the
# same connection failures are hidden unless PIKA_LOG_LEVEL lowers the level.
logging.basicConfig(
    level=os.environ.get("LOG_LEVEL", "INFO").upper(),
    format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s",
)
logging.getLogger("pika").setLevel(os.environ.get("PIKA_LOG_LEVEL", "CRITICAL").upper())

bind = os.environ.get("ROUTER_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("ROUTER_WORKERS", "2"))
threads = int(os.environ.get("ROUTER_THREADS", "16"))
worker_class = "gthread"


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


request_timeout = _seconds("REQUEST_TIMEOUT", 30.0)
# gunicorn kills a worker that is silent for this long, so it must exceed the request timeout.
timeout = int(request_timeout + 30)
# Every request ends by its deadline, so a worker that is stopped needs the
# request timeout plus 2 s to finish. The process that stops the router must wait longer.
graceful_timeout = math.ceil(_seconds("ROUTER_GRACEFUL_TIMEOUT", request_timeout + 2))
keepalive = 5
accesslog = os.environ.get("ROUTER_ACCESS_LOG") or None
preload_app = False


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
