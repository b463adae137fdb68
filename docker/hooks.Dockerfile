# syntax=docker/dockerfile:1
# Metacontroller hooks image: the customize and sync hooks under gunicorn.
# Build from the repository root:
#   docker build -f docker/hooks.Dockerfile -t carbonrouter/hooks:0.1.0 .
# The builder stage compiles wheels (with a C toolchain, in case a platform
# has no binary wheel) and installs them into /opt/venv; the final stage copies
# only that virtualenv and the application code, so it has no compiler.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY docker/requirements/hooks.txt /tmp/requirements.txt
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
COPY hooks/ hooks/
# The sync hook validates every spec against the CRD and renders children
# from the templates; both are read from these paths next to the package.
COPY templates/ templates/
COPY metacontroller/crd-trafficschedule.yaml metacontroller/crd-trafficschedule.yaml
USER 10001:10001
EXPOSE 8080
# The hooks keep no state, so more workers would be safe, but one worker with
# threads keeps every metric counter in one process without multiprocess mode.
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "--workers", "1", "--threads", "8", \
     "--worker-class", "gthread", "--worker-tmp-dir", "/dev/shm", "--access-logfile", "-", \
     "hooks.app:create_app()"]
