# Front door of carbonrouter. `make run` starts the local stack, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

# Every bench-* target in this file (other parts append their own); `make bench` runs them all.
BENCH_TARGETS = $(shell sed -n 's/^\(bench-[A-Za-z0-9_-]*\):.*/\1/p' $(MAKEFILE_LIST))
MINUTES ?= 3
# Extra flags for devstack, e.g. `make run ARGS="--speed-up 600 --free-ports"`.
ARGS ?=

.PHONY: help venv venv-dev rabbitmq node run demo status test bench lint evaluate bench-evaluate

help:
	@echo "make run    start engine, hooks, carbonstat flavours, consumer and router on loopback"
	@echo "make demo   send traffic through the running (or a new) stack for MINUTES=3 and report the mix"
	@echo "make test   run the whole test suite (needs RabbitMQ; started or installed if missing)"
	@echo "make bench  run every benchmark: $(BENCH_TARGETS)"
	@echo "make evaluate  replay the bundled carbon trace for every policy (ARGS=\"--help\" for options)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(RUNTIME_STAMP) $@

venv: $(RUNTIME_STAMP)
venv-dev: $(DEV_STAMP)

rabbitmq:
	@scripts/ensure-rabbitmq.sh

run: venv rabbitmq
	$(PY) -m devstack run $(ARGS)

demo: venv rabbitmq
	$(PY) -m devstack demo --minutes $(MINUTES) $(ARGS)

status: venv
	$(PY) -m devstack status $(ARGS)

node:
	@scripts/ensure-node.sh

test: venv-dev rabbitmq node
	$(PY) -m pytest

bench: $(BENCH_TARGETS)
	@echo "ran: $(BENCH_TARGETS)"

lint: venv-dev
	$(PY) -m ruff check .

# Policy evaluation on the bundled GB trace; output in out/evaluate/.
evaluate: venv
	$(PY) -m engine.evaluate $(ARGS)

bench-evaluate: venv
	$(PY) bench/evaluate_runtime.py

# Engine: CPU time to evaluate 1,000 sessions; figures in docs/benchmarks.md.
bench-engine: venv
	$(PY) bench/engine_bench.py --trace

# Hooks: sync hook p50/p99 latency, three flavours, engine in-process; figures in docs/benchmarks.md.
bench-hooks: venv
	$(PY) bench/hooks_bench.py

# Forecaster: fit time and MAE against seasonal naive and the operator; docs/benchmarks.md.
bench-forecast: venv
	$(PY) bench/forecast_bench.py

# Buffer: throughput and latency through router + RabbitMQ + consumer vs direct; needs RabbitMQ.
bench-buffer: venv rabbitmq
	$(PY) bench/buffer_bench.py
