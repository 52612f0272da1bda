# Two commands: `make run` (set up, then train on the built-in synthetic data and write samples + a plot)
# and `make test` (set up, then run the test suite). Both create .venv if it is missing.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAGEDIFF := $(VENV)/bin/stagediff
RUN_DIR := runs/quickstart

export STAGEDIFF_DATA_DIR ?= $(abspath ../shared/datasets)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(STAGEDIFF) fit synthetic --config configs/quickstart.yaml --out $(RUN_DIR)/model
	$(STAGEDIFF) sample $(RUN_DIR)/model --n 4 --length 1024 --seed 0 --out $(RUN_DIR)/samples.parquet \
		--plot $(RUN_DIR)/samples.png --plot-data synthetic

test: setup
	$(PYTHON) -m pytest

bench: setup
	$(PYTHON) benchmarks/library_speed.py --out docs/benchmarks-library.json

clean:
	rm -rf $(VENV) runs .pytest_cache
