# streamdrift: `make demo` and `make test` do the whole set-up on a fresh machine.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: all venv browser demo test unit integration lint format bench bench-detection bench-scaling schemas clean

all: test

$(STAMP): pyproject.toml setup.py src/streamdrift/_scan.c src/streamdrift/_pairing.c
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "streamdrift needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Chromium and its driver for the dashboard's browser tests: installed when missing (as root)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else \
	    echo "the browser tests need: sudo apt-get install chromium chromium-driver"; \
	  fi; }

## the whole system end to end on embedded Kafka-protocol broker and Redis, showing alerts
demo: venv
	$(BIN)/streamdrift demo

## lint, then every test (integration tests start real servers themselves); librdkafka's
## reconnect chatter from clients outliving the test servers is left out of the output.
## Two test processes (pytest-xdist, a file's tests in one process), each with servers of
## its own: most of the suite waits on brokers, workers and Redis rather than computing,
## so two halve its time on two cores (21 -> 12 minutes)
test: venv browser lint
	set -o pipefail; $(BIN)/pytest -q -n 2 --dist loadfile 2>&1 | grep -v --line-buffered '^%[0-9]|[0-9.]*|'

unit: venv
	$(BIN)/pytest -q tests/unit

integration: venv
	$(BIN)/pytest -q tests/integration

## ruff on everything; mypy on the state layer and the worker (strict, see pyproject.toml)
lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

## the predictions path against a bare consumer, then the label join: labels flowing
## against the same worker on predictions only (with the join, and without: the goal's
## ratio), Redis per message; each exits 1 when Redis is not exact
bench: venv
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/join.py

## 1, 2 and 4 worker processes on an 8-partition topic, and peak memory over 2M events
bench-scaling: venv
	$(BIN)/python benchmarks/scaling.py

## detection delay and false alarms on river's concept-drift streams and feature drifts
bench-detection: venv
	$(BIN)/python benchmarks/detection.py

schemas: venv
	$(BIN)/streamdrift schemas --write schemas

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
