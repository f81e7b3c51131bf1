#!/usr/bin/env bash
# One service of the team instance, in the foreground, for team/Procfile (`make team` runs them all with
# honcho, which stops them with SIGTERM and SIGKILLs what is left after 5 s). Usage: team/service.sh NAME
set -euo pipefail
cd "$(dirname "$0")/.."
. team/env.sh
BIN="${KEEL_BIN:-$PWD/.venv/bin}"
export PATH="$BIN:$PATH"  # DVC stages and Pipes run `python -m ml...` with the project's interpreter

needs() {
  local missing=()
  for name in "$@"; do [[ -n "${!name:-}" ]] || missing+=("$name"); done
  if ((${#missing[@]})); then
    echo "team/service.sh $SERVICE needs ${missing[*]} in the environment (docs/team.md)" >&2
    exit 2
  fi
}

# Postgres refuses to run as root: as root, its commands run as the postgres user. setpriv executes the
# command itself, where runuser would stay in between and SIGKILL Postgres 2 s after passing on a SIGTERM.
AS_POSTGRES=()
[[ $(id -u) != 0 ]] || AS_POSTGRES=(setpriv --reuid=postgres --regid=postgres --init-groups --)

pg_bin() {
  local dir
  dir="${KEEL_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
  [[ -x "$dir/postgres" ]] || { echo "no Postgres server binaries (apt-get install postgresql, or set KEEL_PG_BIN)" >&2; exit 2; }
  echo "$dir"
}

# Wait until Postgres answers, then create the databases this service uses (once; a race is harmless).
databases() {
  export PGPASSWORD="$KEEL_PG_PASSWORD"
  local conn=(-h "$KEEL_PG_HOST" -p "$KEEL_PG_PORT" -U "$KEEL_PG_USER")
  until pg_isready -q "${conn[@]}" -d postgres; do sleep 1; done
  for db in "$@"; do
    if [[ -z $(psql "${conn[@]}" -d postgres -Atc "select 1 from pg_database where datname = '$db'") ]]; then
      createdb "${conn[@]}" "$db" 2>/dev/null || true
    fi
  done
}

postgres_service() {
  needs KEEL_PG_PASSWORD
  local bin data="$KEEL_PG_DATA"
  bin=$(pg_bin)
  if [[ ! -f "$data/PG_VERSION" ]]; then
    mkdir -p "$data"
    [[ $(id -u) == 0 ]] && chown postgres: "$data"
    chmod 700 "$data"
    local pwfile
    pwfile=$(mktemp)
    printf '%s\n' "$KEEL_PG_PASSWORD" >"$pwfile"
    [[ $(id -u) == 0 ]] && chown postgres "$pwfile"
    "${AS_POSTGRES[@]}" "$bin/initdb" -D "$data" -U "$KEEL_PG_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
      --encoding=UTF8 --no-instructions >/dev/null || { rm -f "$pwfile"; exit 1; }
    rm -f "$pwfile"
  fi
  # Postgres runs in a session of its own: the process manager's SIGTERM, and its SIGKILL a few seconds
  # later, reach this script but not Postgres. The trap asks for a fast shutdown (open transactions rolled
  # back, instead of the default smart one that waits for every client), which Postgres finishes even
  # when its checkpoint outlasts the process manager's patience on a busy disk; `make team-stop` waits.
  setsid --wait "${AS_POSTGRES[@]}" "$bin/postgres" -D "$data" -h "$KEEL_PG_HOST" -p "$KEEL_PG_PORT" -k "$data" &
  local pid=$!
  trap '"${AS_POSTGRES[@]}" "$bin/pg_ctl" stop -D "$data" -m fast -w >/dev/null 2>&1 || kill -INT "$(head -n 1 "$data/postmaster.pid")" || true' TERM INT
  wait $pid || true
  wait $pid 2>/dev/null || true
}

mlflow_service() {
  needs KEEL_PG_PASSWORD MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY
  databases "$KEEL_MLFLOW_DB" "$KEEL_MLFLOW_AUTH_DB"
  local pg="postgresql+psycopg2://$KEEL_PG_USER@$KEEL_PG_HOST:$KEEL_PG_PORT"  # the password: PGPASSWORD
  mkdir -p "$KEEL_TEAM_DIR/mlflow"
  [[ "$KEEL_MLFLOW_ARTIFACTS" == *://* ]] || mkdir -p "$KEEL_MLFLOW_ARTIFACTS"
  # Users and permissions in Postgres too; new users may read everything, and only those granted
  # EDIT on the registered model move its aliases.
  cat >"$KEEL_TEAM_DIR/mlflow/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = $pg/$KEEL_MLFLOW_AUTH_DB
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
  export MLFLOW_AUTH_CONFIG_PATH="$KEEL_TEAM_DIR/mlflow/basic_auth.ini"
  exec mlflow server --app-name basic-auth \
    --backend-store-uri "$pg/$KEEL_MLFLOW_DB" \
    --artifacts-destination "$KEEL_MLFLOW_ARTIFACTS" \
    --host "$KEEL_MLFLOW_HOST" --port "$KEEL_MLFLOW_PORT" --workers "${KEEL_MLFLOW_WORKERS:-2}"
}

# The instance settings into the Dagster home, atomically (three services start at once).
dagster_home() {
  mkdir -p "$DAGSTER_HOME"
  cp "${KEEL_DAGSTER_YAML:-team/dagster.yaml}" "$DAGSTER_HOME/.dagster.yaml.$$"
  mv "$DAGSTER_HOME/.dagster.yaml.$$" "$DAGSTER_HOME/dagster.yaml"
}

# The code server's run workers move aliases for sensors and schedules (and for training runs launched
# from the UI) as the deployment's automation account; people move them as themselves (docs/team.md).
code_service() {
  needs KEEL_PG_PASSWORD
  dagster_home
  databases "$KEEL_DAGSTER_DB"
  export MLFLOW_TRACKING_USERNAME="${KEEL_AUTOMATION_USERNAME:-${MLFLOW_AUTH_ADMIN_USERNAME:-admin}}"
  export MLFLOW_TRACKING_PASSWORD="${KEEL_AUTOMATION_PASSWORD:-${MLFLOW_AUTH_ADMIN_PASSWORD:-}}"
  needs MLFLOW_TRACKING_PASSWORD
  exec dagster code-server start -h "$KEEL_CODE_SERVER_HOST" -p "$KEEL_CODE_SERVER_PORT" \
    -m orchestration.definitions -d "$PWD" --location-name keel
}

daemon_service() {
  needs KEEL_PG_PASSWORD
  dagster_home
  databases "$KEEL_DAGSTER_DB"
  exec dagster-daemon run -w team/workspace.yaml
}

# KEEL_WEB_READ_ONLY=1: a webserver that shows everything and launches nothing (docs/team.md).
web_service() {
  needs KEEL_PG_PASSWORD
  dagster_home
  databases "$KEEL_DAGSTER_DB"
  exec dagster-webserver -w team/workspace.yaml -h "$KEEL_WEB_HOST" -p "$KEEL_WEB_PORT" \
    ${KEEL_WEB_READ_ONLY:+--read-only}
}

SERVICE="${1:?usage: team/service.sh postgres|mlflow|code|daemon|web}"
case "$SERVICE" in
  postgres | mlflow | code | daemon | web) "${SERVICE}_service" ;;
  *) echo "unknown service $SERVICE: postgres, mlflow, code, daemon or web" >&2; exit 2 ;;
esac
