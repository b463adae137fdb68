"""gunicorn settings for the router: `gunicorn -c buffer/gunicorn_router.py 'buffer.router:create_app()'`.

Threaded workers (`gthread`) fit the router, because each request spends its
time waiting on the broker. Every thread opens its own RabbitMQ connection
on first use, so a router process holds up to `ROUTER_THREADS` connections.
The app is not preloaded, so each worker builds its own schedule refresher
after the fork. With `PROMETHEUS_MULTIPROC_DIR` set, `child_exit` drops a dead
worker's live gauges from the merged metrics.
"""

import logging
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
# gunicorn kills a worker silent for this long; it must exceed the router's request timeout.
timeout = int(float(os.environ.get("REQUEST_TIMEOUT", "30")) + 30)
graceful_timeout = timeout
keepalive = 5
accesslog = os.environ.get("ROUTER_ACCESS_LOG") or None
preload_app = False


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
