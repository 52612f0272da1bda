# Two commands: `make run` (set up, then the whole pipeline, dvc repro, on params.yaml) and `make test` (set up,
# then the test suite). Both create .venv if it is missing. `make lint`: ruff. `make quickstart`: the library alone.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAGEDIFF := $(VENV)/bin/stagediff
RUN_DIR := runs/quickstart

# The benchmark files the tests read: ../shared/datasets where it exists (the development machines), else
# data/benchmarks in this checkout, where `make test` downloads them once (sha256-checked).
export STAGEDIFF_DATA_DIR ?= $(abspath $(if $(wildcard ../shared/datasets),../shared/datasets,data/benchmarks))
export OMP_WAIT_POLICY ?= PASSIVE
export DO_NOT_TRACK ?= true
export BENTOML_DO_NOT_TRACK ?= true
export MLFLOW_DISABLE_TELEMETRY ?= true
export DVC_NO_ANALYTICS ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup datasets run quickstart test lint format bench lock clean

# pip installs uv and torch (here the CPU wheel on disk; elsewhere set PIP_INDEX_URL to PyTorch's CPU index),
# then uv installs everything else exactly as constraints.txt pins it (about 20 s instead of pip's 4 min).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check uv==0.13.9 torch==2.13.0
	$(VENV)/bin/uv pip install --quiet --python $(PYTHON) --constraint constraints.txt -e ".[pipeline,test]"
	touch $@

setup: $(VENV)/.installed

# The whole pipeline (dvc.yaml) on params.yaml, with one temporary local Prefect server; then the metrics.
run: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) -m flows.repro
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc metrics show

# The library alone (no pipeline): train on synthetic data, sample, plot.
quickstart: setup
	$(STAGEDIFF) fit synthetic --config configs/quickstart.yaml --out $(RUN_DIR)/model
	$(STAGEDIFF) sample $(RUN_DIR)/model --n 4 --length 1024 --seed 0 --out $(RUN_DIR)/samples.parquet \
		--plot $(RUN_DIR)/samples.png --plot-data synthetic

# Present and unmodified benchmark files, downloaded where missing (offline: one line that says what to do).
datasets:
	@bash .github/fetch-datasets.sh "$(STAGEDIFF_DATA_DIR)"

# One worker per core, at most 4 (pytest-xdist): on the 2-core machine the suite took 16-18 minutes instead of 25.
test: setup datasets
	$(PYTHON) -m pytest -n auto --maxprocesses 4

# ruff (pyproject.toml, [tool.ruff]): lint and the format check; `make format` rewrites.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PYTHON) -m benchmarks.library_speed --out results/benchmarks/benchmarks-library.json

lock: setup
	$(VENV)/bin/uv pip freeze --python $(PYTHON) | grep -v -E "^(torch|-e |stagediff)" > constraints.txt.new
	(sed -n '1,3p' constraints.txt; cat constraints.txt.new) > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt
	rm constraints.txt.new

clean:
	rm -rf $(VENV) runs .pytest_cache
