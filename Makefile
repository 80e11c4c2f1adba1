# Two commands do everything on a fresh machine with Python 3.11: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORK ?= work
DEMO_SIZE ?= default
SEED ?= 7
DEMO_ROUNDS ?= 5

# Prefect's ephemeral server needs more than its default 20 s to start on 2 cores; keep Prefect's
# state inside the project; no telemetry (no internet). Values already in the environment win.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_HOME ?= $(abspath $(WORK))/.prefect
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test test-fast lint bench clean help

help:
	@echo "make demo   - install, simulate the default market, validate it, then the closed loop: train, price, play, feedback, retrain, review, re-price"
	@echo "make test   - install and run the test suite"
	@echo "make bench  - the benchmarks: pipeline at three sizes, optimizer, feedback false alarms (about an hour; docs/benchmarks.md)"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is needed (python3.11 or python3 on PATH)"; exit 1; }
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python >= 3.11 needed, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/bundle-pricing simulate --out $(WORK)/demo/data --size $(DEMO_SIZE) --seed $(SEED)
	$(BIN)/bundle-pricing ingest --data $(WORK)/demo/data
	$(BIN)/bundle-pricing loop --data $(WORK)/demo/data --out $(WORK)/demo/loop --rounds $(DEMO_ROUNDS)
	$(BIN)/bundle-pricing evaluate --data $(WORK)/demo/data --prices $(WORK)/demo/loop/round-0/prices

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check pricing tasks flows expectations tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_pipeline.py --size tiny
	$(BIN)/python benchmarks/bench_pipeline.py --size default
	$(BIN)/python benchmarks/bench_pipeline.py --size bench
	$(BIN)/python benchmarks/bench_optimize.py
	$(BIN)/python benchmarks/feedback_false_alarm.py --size tiny --seeds 31-50

clean:
	rm -rf $(WORK) .pytest_cache
