# ganlab: `make train`, `make test`. Both create .venv and install the package on first use.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
ARGS   ?=

.PHONY: help install train test test-fast lint format bench bench-all quality report-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install ganlab with its dev extras (editable)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: install  ## train on the embedded default (extra Hydra overrides: ARGS="model=dcgan data.resolution=64")
	$(PY) -m ganlab.run $(ARGS)

test: install  ## run the test suite (offline, CPU, ~minutes)
	WANDB_MODE=offline $(PY) -m pytest $(ARGS)

test-fast: install  ## the inner loop: all tests but the slow and GPU ones (under a minute)
	WANDB_MODE=offline $(PY) -m pytest -m "not slow and not gpu" $(ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check ganlab tests

format: install  ## ruff autofix + format
	$(VENV)/bin/ruff check --fix ganlab tests && $(VENV)/bin/ruff format ganlab tests

bench: install  ## training / loader / FID throughput (ARGS="--quick" for a one-minute run)
	$(PY) -m ganlab.bench $(ARGS)

bench-all: install  ## the CPU tables of experiments/BENCHMARKS.md (run alone: ~55-70 min, an estimate)
	PY=$(PY) experiments/cpu_bench.sh

report-check: install  ## tiny run -> HTML report -> rendered in headless Chromium (apt-get install chromium)
	rm -rf outputs/report-check
	$(PY) -m ganlab.run debug=tiny metric=none callbacks.progress=null hydra.run.dir=outputs/report-check
	$(PY) -m ganlab.report outputs/report-check --html --check

quality: install  ## converged quality table of every preset on shapes, CPU (hours; ARGS="--only dcgan --kimg 2") -> experiments/quality/converged
	$(PY) -m ganlab.quality --jobs 2 --out experiments/quality/converged $(ARGS)

clean:  ## remove outputs and caches (not .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
