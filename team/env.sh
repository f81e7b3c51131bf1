# The team instance's settings (KEEL_INSTANCE=team, docs/team.md), each overridable from the environment.
# Sourced by team/service.sh and by `make team`; source it in a shell that runs Dagster commands against
# the team instance. No secret has a default: KEEL_PG_PASSWORD, MLFLOW_AUTH_ADMIN_PASSWORD and
# MLFLOW_FLASK_SERVER_SECRET_KEY come from the environment (see docs/team.md).

# NAME DEFAULT: NAME as the environment has it, or DEFAULT when it is unset or empty; exported either way.
keel_default() { export "$1=${!1:-$2}"; }

export KEEL_INSTANCE=team
keel_default KEEL_TEAM_DIR "$PWD/var/team"                   # Postgres' data, MLflow's artifacts, the Dagster home
# Always the team's home (the Makefile exports the local one), unless KEEL_TEAM_HOME names another.
export DAGSTER_HOME="${KEEL_TEAM_HOME:-$KEEL_TEAM_DIR/dagster}"
keel_default KEEL_PG_HOST 127.0.0.1
keel_default KEEL_PG_PORT 5433                                # beside a system Postgres on 5432
keel_default KEEL_PG_USER keel
keel_default KEEL_PG_DATA "$KEEL_TEAM_DIR/postgres"
keel_default KEEL_DAGSTER_DB dagster
keel_default KEEL_MLFLOW_DB mlflow
keel_default KEEL_MLFLOW_AUTH_DB mlflow_auth
keel_default KEEL_MLFLOW_HOST 127.0.0.1
keel_default KEEL_MLFLOW_PORT 5000
# Where the tracking server keeps artifacts (clients upload and download through it): a folder, or
# s3://bucket/prefix, gs://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix.
keel_default KEEL_MLFLOW_ARTIFACTS "$KEEL_TEAM_DIR/mlflow-artifacts"
keel_default KEEL_CODE_SERVER_HOST 127.0.0.1
keel_default KEEL_CODE_SERVER_PORT 4266
keel_default KEEL_WEB_HOST 127.0.0.1
keel_default KEEL_WEB_PORT 3000
keel_default MLFLOW_TRACKING_URI "http://$KEEL_MLFLOW_HOST:$KEEL_MLFLOW_PORT"
# How long the daemon and the webservers wait for the code server (Dagster's default: 60 s). On two
# busy cores starting a run took longer, and the run failed before it began (benchmarks/README.md).
keel_default DAGSTER_GRPC_TIMEOUT_SECONDS 180
unset -f keel_default
