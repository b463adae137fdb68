# syntax=docker/dockerfile:1
# carbonstat image: one flavour of the sample service, chosen by CARBONSTAT_FLAVOUR.
# Build from the repository root:
#   docker build -f docker/carbonstat.Dockerfile -t carbonrouter/carbonstat:0.1.0 .
# The builder stage compiles wheels (with a C toolchain, in case a platform
# has no binary wheel) and installs them into /opt/venv; the final stage copies
# only that virtualenv and the application code, so it has no compiler.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY docker/requirements/carbonstat.txt /tmp/requirements.txt
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
COPY carbonstat/ carbonstat/
ENV CARBONSTAT_FLAVOUR=high
USER 10001:10001
EXPOSE 8080
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "--workers", "1", "--threads", "4", \
     "--worker-class", "gthread", "--worker-tmp-dir", "/dev/shm", "--access-logfile", "-", \
     "carbonstat.app:create_app()"]
