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
# Where an alert's link opens a run (orchestration/alerts.py).
export KEEL_UI_URL ?= http://127.0.0.1:$(PORT)
# DVC stages run `python -m ml...`: the project's interpreter must come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup system-packages emulators demo next-day automation-on backfill dataset test lint ui serve mlflow lock clean team team-stop

# Which instance the Dagster commands below talk to: `local` (var/dagster on SQLite, `dagster dev`) or `team`
# (the services `make team` starts, on Postgres; team/env.sh holds its settings; docs/team.md).
KEEL_INSTANCE ?= local
WORKSPACE := $(if $(filter team,$(KEEL_INSTANCE)),team/workspace.yaml,workspace.yaml)
INSTANCE_ENV := $(if $(filter team,$(KEEL_INSTANCE)),. team/env.sh &&,)

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

## system-packages: what neither uv nor npm installs, from Debian's packages and only when missing:
## node and npm (for Azurite), chromium (the browser tests drive it; no Playwright browser download) and
## postgresql (the team instance and its tests)
# Debian's Postgres server is not on PATH: it is found by this pattern (compgen, a bash builtin).
POSTGRES_BIN_GLOB ?= /usr/lib/postgresql/*/bin/postgres
system-packages:
	@missing=(); \
	command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm); \
	command -v chromium >/dev/null || missing+=(chromium); \
	compgen -G "$(POSTGRES_BIN_GLOB)" >/dev/null || missing+=(postgresql); \
	if (( $${#missing[@]} )); then \
	  command -v apt-get >/dev/null || { echo "make test needs $${missing[*]}: install them with your package manager" >&2; exit 1; }; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "Installing $${missing[*]} from Debian's packages"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$${missing[@]}"; \
	fi

## emulators: what the cloud tests run that pip does not install (Azurite, pinned, into .tools/node)
emulators: $(AZURITE_STAMP)

$(AZURITE_STAMP): | system-packages
	@command -v npm >/dev/null || { echo "make emulators needs node and npm: apt-get install -y nodejs npm" >&2; exit 1; }
	mkdir -p .tools/node
	npm install --prefix .tools/node --save-exact --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	test -x .tools/node/node_modules/.bin/azurite-blob
	touch $@

## demo: the whole lifecycle from scratch: data, a champion, 30 simulated nights with drift and a retrain; a table per day
demo: setup
	$(BIN)/python -m demo

## next-day: one more simulated day after the demo (its snapshot, and the labels of label_delay_days ago)
next-day: setup
	$(BIN)/python -m demo.next_day

## automation-on: turn on every sensor and the nightly schedule in $(DAGSTER_HOME); the daemon (`make ui`) runs them
automation-on: setup
	$(INSTANCE_ENV) $(BIN)/dagster sensor start -w $(WORKSPACE) --start-all
	$(INSTANCE_ENV) $(BIN)/dagster schedule start -w $(WORKSPACE) --start-all

## backfill: queue nightly_scoring for FROM..TO (YYYY-MM-DD); the daemon (`make ui`) runs the days
backfill: setup
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill FROM=2026-10-01 TO=2026-10-07" >&2; exit 2; }
	$(INSTANCE_ENV) $(BIN)/dagster job backfill -w $(WORKSPACE) -j nightly_scoring --from $(FROM) --to $(TO) --noprompt

## dataset: draft the dataset: section from your file: make dataset SOURCE=data/source/x.csv TARGET=label
## [OUT=dataset.yaml] (a new file), or INTO=params.yaml (replaces its dataset: section; the old file is kept
## as params.yaml.bak); DRAFT_ARGS='--positive ... --id ... --timestamp ...' to override a guess
dataset: setup
	@test -n "$(SOURCE)" -a -n "$(TARGET)" || { echo "usage: make dataset SOURCE=data/source/x.csv TARGET=label [OUT=dataset.yaml | INTO=params.yaml]" >&2; exit 2; }
	$(BIN)/python -m ml.spec_draft $(SOURCE) --target $(TARGET) $(if $(INTO),--into-params $(INTO),--out $(or $(OUT),dataset.yaml)) $(DRAFT_ARGS)

## test: the whole test suite (unit, Dagster end to end, the daemon, CLI, DVC, the cloud backends on
## emulators, the UI in Chromium); installs what it needs first, system packages included
test: setup system-packages emulators
	$(BIN)/pytest -n 2 --dist loadfile

## canary: try VERSION on live traffic (MODE=canary|shadow, PERCENT of requests, REASON); the sensor canary_bake
## promotes it after serving.rollout.bake_minutes, or rolls it back at the first breach
.PHONY: canary
comma := ,
canary: setup
	@test -n "$(VERSION)" || { echo "usage: make canary VERSION=3 [MODE=shadow] [PERCENT=10] [REASON='...']" >&2; exit 2; }
	@mkdir -p var && echo '{"ops": {"start_rollout": {"config": {"version": $(VERSION), "mode": "$(or $(MODE),canary)", $(if $(PERCENT),"percent": $(PERCENT)$(comma)) "reason": "$(or $(REASON),make canary VERSION=$(VERSION))"}}}}' > var/canary.yaml
	$(BIN)/dagster job execute -m orchestration.definitions -j start_canary -c var/canary.yaml

## lint: ruff's lint rules and formatting (pyproject.toml)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## ui: the Dagster UI on http://127.0.0.1:$(PORT) over the demo's history; the drift reports on $(REPORTS_PORT)
ui: setup
	$(BIN)/python -m demo.ui --host 127.0.0.1 --port $(PORT) --reports-port $(REPORTS_PORT)

## serve: the real-time endpoint for the champion (after `make demo`), on params.yaml serving.host/port
## (http://127.0.0.1:8080; SERVE_PORT=... for another port)
serve: setup
	$(BIN)/python -m serving --project-dir $(CURDIR) $(if $(SERVE_PORT),--port $(SERVE_PORT))

## mlflow: the MLflow UI on the local tracking store and registry (var/mlflow)
mlflow: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/var/mlflow/mlflow.db -h 127.0.0.1 -p $(MLFLOW_PORT)

## team: the team instance on this machine (docs/team.md): Postgres (as the postgres user), MLflow's tracking
## server with logins, the code server, the daemon and the webserver (http://127.0.0.1:3000), each its own
## process under honcho (team/Procfile). Needs KEEL_PG_PASSWORD, MLFLOW_AUTH_ADMIN_PASSWORD and
## MLFLOW_FLASK_SERVER_SECRET_KEY in the environment. Ctrl-C or `make team-stop` stops them all.
team: .venv/.synced
	@. team/env.sh; missing=(); \
	for name in KEEL_PG_PASSWORD MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY; do \
	  [ -n "$${!name:-}" ] || missing+=($$name); done; \
	if (( $${#missing[@]} )); then echo "make team needs $${missing[*]} in the environment (docs/team.md)" >&2; exit 2; fi
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || [ -n "$$KEEL_PG_BIN" ] || \
	  { echo "make team needs Postgres: apt-get install -y postgresql (or make system-packages)" >&2; exit 2; }
	. team/env.sh && mkdir -p "$$KEEL_TEAM_DIR" && echo $$$$ > "$$KEEL_TEAM_DIR/honcho.pid" && \
	  exec $(BIN)/honcho -f team/Procfile -d . start

## team-stop: stop what `make team` started (honcho sends SIGTERM to every service, SIGKILL after 5 s) and
## wait until Postgres has finished its shutdown
team-stop:
	@. team/env.sh; pidfile="$$KEEL_TEAM_DIR/honcho.pid"; \
	if [ -f "$$pidfile" ] && kill -TERM "$$(cat "$$pidfile")" 2>/dev/null; then \
	  while kill -0 "$$(cat "$$pidfile")" 2>/dev/null; do sleep 1; done; \
	  postmaster="$$KEEL_PG_DATA/postmaster.pid"; \
	  while [ -f "$$postmaster" ] && kill -0 "$$(head -n 1 "$$postmaster")" 2>/dev/null; do sleep 1; done; \
	  echo "team instance stopped"; \
	else echo "no team instance running (no live honcho in $$pidfile)"; fi; rm -f "$$pidfile"

## lock: re-resolve uv.lock after changing pyproject.toml
lock: | $(UV)
	$(UV) lock

clean:
	rm -rf .venv .tools var
