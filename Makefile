# perpfolio: every target sets itself up (venv + pinned install) on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.perpfolio-installed
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(wildcard dbt_project/*.yml) $(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f 2>/dev/null)

# The venv's bin first on PATH, as if activated (dagster-dbt looks up `dbt` there).
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PERPFOLIO_HOME ?= $(CURDIR)/.perpfolio
export DAGSTER_HOME ?= $(PERPFOLIO_HOME)/dagster
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DAGSTER_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-fast lint ui bench clean

install: $(STAMP)

# Re-runs only when the dependency pins change; otherwise make sees the stamp and does nothing.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# dbt's manifest, which the code location loads: parsed again when the dbt project changes
# (`dagster dev` also re-parses it on load).
$(MANIFEST): $(STAMP) $(DBT_SOURCES)
	$(BIN)/dagster-dbt project prepare-and-package --file orchestration/resources/dbt_cli.py

demo: install $(MANIFEST)
	$(BIN)/perpfolio demo

# Two workers (pytest-xdist), a module per worker at a time: module fixtures stay in one process.
PYTEST_WORKERS ?= 2
test: install $(MANIFEST)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test-fast: install $(MANIFEST)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

# ruff (style), import-linter (Dagster stays out of the domain packages, layers point one way),
# mypy (types of the domain packages).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

ui: install $(MANIFEST)
	$(BIN)/perpfolio ui

bench: install $(MANIFEST)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(PERPFOLIO_HOME) dbt_project/target dbt_project/logs
