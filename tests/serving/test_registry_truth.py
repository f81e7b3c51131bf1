"""The running endpoint answers with the registry's champion: through an unreadable rollout file, and after
its MLflow database was replaced by another one; /health says what is wrong meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ml.io import write_json
from resources.registry import CHAMPION
from serving.state import RolloutState, state_uri, write_state
from tests.serving.project import REPO


def _health(server, strict: bool = False) -> httpx.Response:
    return httpx.get(f"{server.url}/health", params={"strict": "true"} if strict else None, timeout=10)


def _wait_health(server, condition, what: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = _health(server).json()
        if condition(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"/health did not {what} within {timeout:.0f} s: {_health(server).json()}")


def _versions(server, records, n: int = 60) -> set[int]:
    response = server.predict(records[:n])
    assert response.status_code == 200, response.text
    return {p["model_version"] for p in response.json()["predictions"]}


def test_a_rollback_is_followed_while_the_rollout_file_cannot_be_read(server, records):
    name, registry = server.model_name, server.registry
    registry.move_alias(name, CHAMPION, 2, 1, reason="test: v2 serves", actor="tests")
    server.wait_for(lambda m: m["champion"]["version"] == 2, "load v2")
    write_state(server.store_root, RolloutState(mode="off", reason="test", decided_by="tests"))
    with open(state_uri(server.store_root), "w", encoding="utf-8") as file:
        file.write('{"mode": "canary", "challenger_ver')  # cut short: not JSON
    registry.move_alias(name, CHAMPION, 1, 2, reason="test: roll back", actor="tests", kind="rollback")
    server.wait_for(lambda m: m["champion"]["version"] == 1, "follow the rollback", timeout=30)
    assert _versions(server, records) == {1}

    health = _wait_health(server, lambda h: h["status"] == "degraded", "say degraded")
    assert _health(server).status_code == 200  # still answering, with the registry's champion
    assert health["champion_version"] == 1 and health["mode"] == "off"
    assert any("rollout.json" in reason and "cannot be used" in reason for reason in health["reasons"]), health
    assert _health(server, strict=True).status_code == 503

    write_state(server.store_root, RolloutState(mode="off", reason="test: repaired", decided_by="tests"))
    _wait_health(server, lambda h: h["status"] == "ok", "recover")
    assert _health(server, strict=True).status_code == 200


def test_a_canary_whose_challenger_became_champion_is_over(server, records):
    name, registry = server.model_name, server.registry
    registry.move_alias(name, "challenger", 2, None, reason="test: try v2", actor="tests")
    write_state(
        server.store_root,
        RolloutState(mode="canary", challenger_version=2, canary_percent=50, reason="test", decided_by="tests"),
    )
    server.wait_for(lambda m: m["mode"] == "canary", "start the canary")
    registry.move_alias(name, CHAMPION, 2, 1, reason="test: approved during its canary", actor="tests")
    metadata = server.wait_for(lambda m: m["champion"]["version"] == 2 and m["mode"] == "off", "end the canary")
    assert metadata["challenger"] is None and "is the registry's champion" in metadata["rollout"]["reason"]
    assert _versions(server, records) == {2}
    health = _wait_health(server, lambda h: h["status"] == "degraded", "report the stale rollout file")
    assert any("v2 is the registry's champion" in reason for reason in health["reasons"]), health
    registry.delete_alias(name, "challenger")
    registry.move_alias(name, CHAMPION, 1, 2, reason="test: back", actor="tests", kind="rollback")
    write_state(server.store_root, RolloutState(mode="off", reason="test: over", decided_by="tests"))
    _wait_health(server, lambda h: h["status"] == "ok" and h["champion_version"] == 1, "recover")


def test_a_replaced_mlflow_database_is_followed(server, records, tmp_path):
    """Last in this module: the server's registry is replaced for good."""
    name, old = server.model_name, server.registry
    other_sha = old.version_info(name, 2)["tags"]["manifest_sha256"]
    other_model = old.download(name, 2, tmp_path / "other")
    database = old.database()
    database.rename(database.with_name("mlflow-moved.db"))

    health = _wait_health(server, lambda h: h["status"] == "degraded", "notice the database is gone")
    assert any(str(database) in reason and "does not exist" in reason for reason in health["reasons"]), health
    assert _versions(server, records) == {1}  # the last verified champion keeps answering meanwhile

    # Another process makes a new registry at the same path, whose v1 is another model: on purpose, so the
    # old registry's artifacts are moved aside too (a database missing beside them is refused as lost).
    Path(old.root, "artifacts").rename(Path(old.root, "artifacts-moved"))
    script = (
        "import sys\n"
        "from resources.registry import CHAMPION, ModelRegistry\n"
        "root, name, sha, model = sys.argv[1:]\n"
        "new = ModelRegistry(root=root)\n"
        "run_id = new.log_training_run(name, 'another model', {}, {}, {}, model)\n"
        "assert new.register(name, run_id, {'manifest_sha256': sha}) == 1\n"
        "new.move_alias(name, CHAMPION, 1, None, reason='test: a new registry', actor='tests')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run(
        [sys.executable, "-c", script, old.root, name, other_sha, str(other_model)], cwd=REPO, env=env, check=True
    )

    metadata = server.wait_for(lambda m: m["champion"]["manifest_sha256"] == other_sha, "serve the new v1")
    assert metadata["champion"]["version"] == 1 and metadata["store_replaced"], metadata
    scored = server.predict(records[:20]).json()["predictions"]
    assert {p["model_version"] for p in scored} == {1}
    _wait_health(server, lambda h: h["status"] == "ok", "recover")
    write_json({"mode": "off"}, state_uri(server.store_root))
