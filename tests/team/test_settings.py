"""The team instance's settings as Dagster reads them, and the registry's refusal without an identity
(no server needed; tests/e2e/test_team.py runs the services)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.config import pg_config
from dagster_postgres.utils import pg_url_from_config

from orchestration.deployments import DeploymentError, instance_profile, local
from resources.registry import AliasMoveRefused, ModelRegistry

REPO = Path(__file__).resolve().parents[2]
PG = {"KEEL_PG_USER": "keel", "KEEL_PG_PASSWORD": "s3cret", "KEEL_PG_HOST": "127.0.0.1", "KEEL_PG_PORT": "5433"}


def test_the_team_instance_is_postgres_through_psycopg2_with_the_queue_pools_monitoring_and_retries(
    tmp_path, monkeypatch
):
    for key, value in {**PG, "KEEL_DAGSTER_DB": "dagster"}.items():
        monkeypatch.setenv(key, value)
    shutil.copy(REPO / "team" / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    storage = process_config(pg_config(), config["storage"]["postgres"])  # resolves the {env: ...} values
    url = pg_url_from_config(storage.value)
    assert url == "postgresql+psycopg2://keel:s3cret@127.0.0.1:5433/dagster"  # never a bare postgresql://
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 4
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    # No secret in the file itself.
    assert "s3cret" not in (REPO / "team" / "dagster.yaml").read_text()


def test_the_workspace_points_at_the_code_server_the_procfile_starts():
    workspace = yaml.safe_load((REPO / "team" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert server["port"] == {"env": "KEEL_CODE_SERVER_PORT"} and server["location_name"] == "keel"
    procfile = (REPO / "team" / "Procfile").read_text()
    assert {line.split(":")[0] for line in procfile.splitlines()} == {"postgres", "mlflow", "code", "daemon", "web"}
    service = (REPO / "team" / "service.sh").read_text()
    assert "dagster code-server start" in service and "--location-name keel" in service
    assert "--app-name basic-auth" in service and "--artifacts-destination" in service


def test_the_instance_is_chosen_by_one_variable():
    assert instance_profile({}) == "local"
    assert instance_profile({"KEEL_INSTANCE": "team"}) == "team"
    with pytest.raises(DeploymentError, match="KEEL_INSTANCE='prod' is not one of local, team"):
        instance_profile({"KEEL_INSTANCE": "prod"})


def test_on_the_team_instance_no_alias_moves_without_an_authenticated_user(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_INSTANCE", "team")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    registry = local(REPO)["registry"]
    assert registry.require_identity
    registry = ModelRegistry(
        root=str(tmp_path), tracking_uri="http://127.0.0.1:9/", require_identity=True, params=registry.params
    )
    with pytest.raises(AliasMoveRefused, match="no authenticated MLflow user.*MLFLOW_TRACKING_USERNAME"):
        registry.move_alias("m", "champion", 2, expected_from=1, reason="r", actor="a")
    with pytest.raises(AliasMoveRefused, match="no authenticated MLflow user"):
        registry.retire_alias("m", "challenger", 2, reason="r", actor="a")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    assert registry.identity() == "ana"
    # A local store has no users: the identity is None whatever the environment says.
    assert ModelRegistry(root=str(tmp_path)).identity() is None


def test_make_team_refuses_to_start_without_its_secrets():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    done = subprocess.run(
        ["make", "-s", "team", "-o", ".venv/.synced"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "make team needs KEEL_PG_PASSWORD MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY" in done.stderr
