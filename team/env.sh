# The team instance's settings (KEEL_INSTANCE=team, docs/team.md), each overridable from the environment.
# Sourced by team/service.sh and by `make team`; source it in a shell that runs Dagster commands against
# the team instance. No secret has a default: KEEL_PG_PASSWORD, MLFLOW_AUTH_ADMIN_PASSWORD and
# MLFLOW_FLASK_SERVER_SECRET_KEY come from the environment (see docs/team.md).
export KEEL_INSTANCE=team
: "${KEEL_TEAM_DIR:=$PWD/var/team}"                  # Postgres' data, MLflow's artifacts, the Dagster home
export KEEL_TEAM_DIR
export DAGSTER_HOME="${KEEL_TEAM_HOME:-$KEEL_TEAM_DIR/dagster}"
export KEEL_PG_HOST="${KEEL_PG_HOST:-127.0.0.1}"
export KEEL_PG_PORT="${KEEL_PG_PORT:-5433}"           # beside a system Postgres on 5432
export KEEL_PG_USER="${KEEL_PG_USER:-keel}"
export KEEL_PG_DATA="${KEEL_PG_DATA:-$KEEL_TEAM_DIR/postgres}"
export KEEL_DAGSTER_DB="${KEEL_DAGSTER_DB:-dagster}"
export KEEL_MLFLOW_DB="${KEEL_MLFLOW_DB:-mlflow}"
export KEEL_MLFLOW_AUTH_DB="${KEEL_MLFLOW_AUTH_DB:-mlflow_auth}"
export KEEL_MLFLOW_HOST="${KEEL_MLFLOW_HOST:-127.0.0.1}"
export KEEL_MLFLOW_PORT="${KEEL_MLFLOW_PORT:-5000}"
# Where the tracking server keeps artifacts (clients upload and download through it): a folder, or
# s3://bucket/prefix, gs://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix.
export KEEL_MLFLOW_ARTIFACTS="${KEEL_MLFLOW_ARTIFACTS:-$KEEL_TEAM_DIR/mlflow-artifacts}"
export KEEL_CODE_SERVER_HOST="${KEEL_CODE_SERVER_HOST:-127.0.0.1}"
export KEEL_CODE_SERVER_PORT="${KEEL_CODE_SERVER_PORT:-4266}"
export KEEL_WEB_HOST="${KEEL_WEB_HOST:-127.0.0.1}"
export KEEL_WEB_PORT="${KEEL_WEB_PORT:-3000}"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-http://$KEEL_MLFLOW_HOST:$KEEL_MLFLOW_PORT}"
