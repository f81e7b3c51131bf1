# `make demo` and `make test` set everything up from python3 alone: a pinned uv in .tools/, the locked
# environment in .venv/ (uv.lock), the Dagster home in var/dagster. Safe to re-run; only what changed
# is redone.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
# Azure Blob emulator for the cloud tests, from npm into .tools/node (never global). 3.35.0 runs on
# Debian 12's Node 18; newer releases need Node >= 22.
AZURITE_VERSION := 3.35.0
AZURITE_STAMP := .tools/node/.azurite-$(AZURITE_VERSION)
BIN := .venv/bin
PORT ?= 3000
REPORTS_PORT ?= 3001
MLFLOW_PORT ?= 5000

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
export DAGSTER_HOME ?= $(CURDIR)/var/dagster
# Where `make ui` serves the stored HTML reports; the demo's runs link there too.
export KEEL_REPORTS_URL ?= http://127.0.0.1:$(REPORTS_PORT)
# DVC stages run `python -m ml...`: the project's interpreter must come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup emulators demo test lint ui mlflow lock clean

setup: .venv/.synced $(DAGSTER_HOME)/dagster.yaml

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

$(DAGSTER_HOME)/dagster.yaml: orchestration/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

## emulators: what the cloud tests run that pip does not install (Azurite, pinned, into .tools/node)
emulators: $(AZURITE_STAMP)

$(AZURITE_STAMP):
	@command -v npm >/dev/null || { echo "make emulators needs node and npm: apt-get install -y nodejs npm" >&2; exit 1; }
	mkdir -p .tools/node
	npm install --prefix .tools/node --save-exact --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	test -x .tools/node/node_modules/.bin/azurite-blob
	touch $@

## demo: the whole lifecycle from scratch: data, a champion, 30 simulated nights with drift and a retrain; a table per day
demo: setup
	$(BIN)/python -m demo

## test: the whole test suite (unit, Dagster end to end, CLI, DVC, the cloud backends on emulators)
test: setup emulators
	$(BIN)/pytest -n 2 --dist loadfile

## lint: ruff's lint rules and formatting (pyproject.toml)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## ui: the Dagster UI on http://127.0.0.1:$(PORT) over the demo's history; the drift reports on $(REPORTS_PORT)
ui: setup
	$(BIN)/python -m demo.ui --host 127.0.0.1 --port $(PORT) --reports-port $(REPORTS_PORT)

## mlflow: the MLflow UI on the local tracking store and registry (var/mlflow)
mlflow: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/var/mlflow/mlflow.db -h 127.0.0.1 -p $(MLFLOW_PORT)

## lock: re-resolve uv.lock after changing pyproject.toml
lock: | $(UV)
	$(UV) lock

clean:
	rm -rf .venv .tools var
