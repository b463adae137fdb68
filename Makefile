# Front door of carbonrouter. `make run` starts the local stack, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: help venv venv-dev rabbitmq run test lint

help:
	@echo "make run    start engine, hooks, carbonstat flavours, consumer and router on loopback"
	@echo "make test   run the whole test suite (needs RabbitMQ; started or installed if missing)"

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

test: venv-dev rabbitmq
	$(PY) -m pytest

lint: venv-dev
	$(PY) -m ruff check .
