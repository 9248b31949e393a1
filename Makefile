# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS      := .tools
UV         := $(TOOLS)/bin/uv
VENV       := .venv
PY         := $(VENV)/bin/python
# offline-safe: never let uv download a Python; use the machine's 3.11
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v python3.11 || command -v python3)
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PYTHONUNBUFFERED := 1
# byte-compile at install: the first `lakehouse` run would otherwise spend seconds compiling imports
export UV_COMPILE_BYTECODE := 1

.PHONY: help env demo ui lint lint-py lint-dbt test test-fast bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(UV):
	@echo "==> installing uv $(UV_VERSION) into $(TOOLS)/"
	@python3 -m venv $(TOOLS) && $(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@echo "==> creating $(VENV) from uv.lock (pinned, registries only)"
	@$(UV) sync --frozen
	@touch $@

DBT_MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES  := $(shell find dbt_project -path dbt_project/target -prune -o -type f \( -name '*.sql' -o -name '*.yml' -o -name '*.csv' \) -print)
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

# Dagster's dbt assets load the manifest at import: prepare it at build time, again when dbt files change
$(DBT_MANIFEST): $(VENV)/.synced $(DBT_SOURCES)
	@echo "==> dbt parse (the manifest the Dagster dbt assets load)"
	@cd dbt_project && ../$(VENV)/bin/dbt parse --profiles-dir . --quiet

env: $(VENV)/.synced $(DBT_MANIFEST)  ## create/refresh the environment from the lock file

demo: env  ## build a sample lake and run the main job on embedded defaults
	@$(PY) -m orchestration.demo

ui: env  ## the Dagster UI on http://127.0.0.1:3000 over the demo's data (Ctrl-C stops it)
	@$(PY) -c "from lakehouse.settings import get_settings; from orchestration.demo import install_instance_config as i; i(get_settings().dagster_home)"
	@echo "==> dagster dev on http://127.0.0.1:3000 (the demo's data; set LAKEHOUSE_* to point elsewhere)"
	@DAGSTER_HOME=$${DAGSTER_HOME:-$${LAKEHOUSE_HOME:-$(CURDIR)/.data}/dagster} \
	  LAKEHOUSE_PSEUDONYM_KEY=$${LAKEHOUSE_PSEUDONYM_KEY:-demo-only-not-a-secret} \
	  $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

PY_SOURCES := src assets orchestration tests bench

lint: lint-py lint-dbt  ## ruff (lint + format check), mypy on src/, sqlfluff on the dbt models

lint-py: $(VENV)/.synced
	@echo "==> ruff check, ruff format --check, mypy"
	@$(VENV)/bin/ruff check $(PY_SOURCES)
	@$(VENV)/bin/ruff format --check $(PY_SOURCES)
	@$(VENV)/bin/mypy  # [tool.mypy] in pyproject.toml: files = src

# sqlfluff's jinja templater with dbt builtins (dbt_project/.sqlfluff): no dbt run, no database
lint-dbt: $(VENV)/.synced
	@echo "==> sqlfluff lint dbt_project/models"
	@cd dbt_project && ../$(VENV)/bin/sqlfluff lint models --nocolor --disable-progress-bar

test: lint env bqemu chromium  ## lint, then run the whole suite (slow suites included)
	@$(PY) -m pytest --durations=15

test-fast: env bqemu  ## the suite without slow tests
	@$(PY) -m pytest -m "not slow"

# Headless Chromium for the report's browser test (tests/marts/test_report.py): Debian's package, only when missing
.PHONY: chromium
chromium:  ## Debian's chromium (+ a font) for the report's browser test, installed only when missing
	@command -v chromium >/dev/null || { echo "==> installing Debian's chromium (report browser test)" && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-dejavu-core >/dev/null; }

# BigQuery emulator for the tests (tests/support/bq_emulator.py): its own pinned venv, and the DuckDB
# extensions it needs offline installed under a repo-local HOME (DuckDB uses $HOME/.duckdb).
BQEMU_VENV := .venv-bqemu
BQEMU_HOME := .bqemu-home
BQEMU_REQS := tools/bqemulator/requirements.txt

.PHONY: bqemu
bqemu: | $(UV)  ## BigQuery emulator venv (.venv-bqemu) + its DuckDB extensions in .bqemu-home
	@if [ ! -f $(BQEMU_VENV)/.synced ] || [ $(BQEMU_REQS) -nt $(BQEMU_VENV)/.synced ]; then \
	  echo "==> creating $(BQEMU_VENV) from $(BQEMU_REQS) (bqemulator, pinned, registries only)" && \
	  rm -f $(BQEMU_HOME)/.synced && \
	  $(UV) venv --quiet --clear $(BQEMU_VENV) && \
	  $(UV) pip install --quiet --python $(BQEMU_VENV)/bin/python -r $(BQEMU_REQS) && \
	  touch $(BQEMU_VENV)/.synced; \
	fi
	@if [ ! -f $(BQEMU_HOME)/.synced ]; then \
	  echo "==> installing DuckDB spatial + avro (from wheels, offline) into $(BQEMU_HOME)/.duckdb" && \
	  mkdir -p $(BQEMU_HOME) && \
	  HOME=$(CURDIR)/$(BQEMU_HOME) $(BQEMU_VENV)/bin/python -c "import duckdb; \
	    from duckdb_extensions import import_extension; con = duckdb.connect(); \
	    [import_extension(e, con=con) for e in ('spatial', 'avro')]; \
	    [con.execute(f'LOAD {e}') for e in ('spatial', 'avro')]" && \
	  touch $(BQEMU_HOME)/.synced; \
	fi

bench: env  ## benchmarks with their in-run baselines
	@$(PY) bench/bench_generate.py --events 1000000


clean:  ## remove the environment and local data
	rm -rf $(VENV) $(TOOLS) .data .venv-bqemu .bqemu-home
