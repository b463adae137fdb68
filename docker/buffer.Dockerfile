# syntax=docker/dockerfile:1
# Buffer images: the router (target `router`) and the consumer (target `consumer`).
# Build from the repository root:
#   docker build -f docker/buffer.Dockerfile --target router -t carbonrouter/router:0.1.0 .
#   docker build -f docker/buffer.Dockerfile --target consumer -t carbonrouter/consumer:0.1.0 .
# The builder stage compiles wheels (with a C toolchain, in case a platform
# has no binary wheel) and installs them into /opt/venv; the final stage copies
# only that virtualenv and the application code, so it has no compiler.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY docker/requirements/buffer.txt /tmp/requirements.txt
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r /tmp/requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 carbonrouter \
    && useradd --system --uid 10001 --gid carbonrouter --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin carbonrouter
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY buffer/ buffer/
USER 10001:10001

FROM runtime AS consumer
# The consumer serves its metrics on CONSUMER_METRICS_PORT when that is set;
# the rendered consumer Deployment sets it to 9100.
EXPOSE 9100
CMD ["python", "-m", "buffer.consumer"]

# The router is the last stage, so a build without --target gives the router.
FROM runtime AS router
# Several gunicorn workers share one metrics view through this directory,
# which must exist and be empty when gunicorn starts.
ENV PROMETHEUS_MULTIPROC_DIR=/dev/shm/prometheus
EXPOSE 8000
CMD ["sh", "-c", "rm -rf \"$PROMETHEUS_MULTIPROC_DIR\" && mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && exec gunicorn -c buffer/gunicorn_router.py --worker-tmp-dir /dev/shm 'buffer.router:create_app()'"]
