# syntax=docker/dockerfile:1
# Decision engine image: the engine Flask app under gunicorn.
# Build from the repository root:
#   docker build -f docker/engine.Dockerfile -t carbonrouter/engine:0.1.0 .
# The builder stage compiles wheels (with a C toolchain, in case a platform
# has no binary wheel) and installs them into /opt/venv; the final stage copies
# only that virtualenv and the application code, so it has no compiler.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY docker/requirements/engine.txt /tmp/requirements.txt
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
COPY engine/ engine/
# engine/gunicorn.conf.py runs ONE worker with threads: sessions live in the
# worker's memory, and a second worker would hold a second, diverging copy of
# each. The heartbeat files go to /dev/shm because the root filesystem is
# read-only.
ENV ENGINE_BIND=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080
CMD ["gunicorn", "-c", "engine/gunicorn.conf.py", "--worker-tmp-dir", "/dev/shm", "engine.app:create_app()"]
