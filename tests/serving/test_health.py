"""/health and the served models when a version cannot be loaded (the app in this process, its poller on a
thread, a private copy of the test project's MLflow store and artifact store)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ml.params import load_params
from resources.registry import CHALLENGER, CHAMPION, ModelRegistry
from resources.storage import ArtifactStore
from serving.app import ServerParts, create_app
from serving.models import ModelPoller, ModelSource
from serving.request_log import RequestLog
from serving.state import RolloutState, write_state
from tests.conftest import relocate_mlflow


@pytest.fixture
def project(serving_template: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tmp_path / "project"
    shutil.copytree(serving_template, project, symlinks=True)
    relocate_mlflow(project, serving_template)
    return project


def _registry(project: Path) -> ModelRegistry:
    return ModelRegistry(root=str(project / "var" / "mlflow"))


def _corrupt_registry_copy(registry: ModelRegistry, name: str, version: int) -> None:
    """Change every file of the version's copy in MLflow, so it can never verify (nor be re-published)."""
    folder = Path(registry.version_info(name, version)["source"].removeprefix("file://"))
    for file in json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["files"]:
        with open(folder / file, "a", encoding="utf-8") as handle:
            handle.write("\n")


@pytest.fixture
def serve(project: Path) -> Iterator:
    clients = []

    def start() -> TestClient:
        params = load_params(project / "params.yaml")
        store = ArtifactStore(root=str(project / "var" / "storage"))
        source = ModelSource(_registry(project), store, params.model_name, compiled=params.scoring.compiled)
        poller = ModelPoller(source, store.root, params.serving.poll_seconds)
        log = RequestLog(store.root, params.dataset, flush_seconds=0.2, flush_rows=1000)
        client = TestClient(create_app(ServerParts(params.dataset, poller, log, params.model_name)))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def _wait(client: TestClient, condition, what: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get("/health").json()
        if condition(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"/health did not {what} within {timeout:.0f} s: {client.get('/health').json()}")


def test_a_challenger_that_cannot_load_leaves_the_champion_serving(project, serve, records):
    registry, name = _registry(project), load_params(project / "params.yaml").model_name
    _corrupt_registry_copy(registry, name, 2)
    registry.client().set_registered_model_alias(name, CHALLENGER, "2")
    state = RolloutState(mode="canary", challenger_version=2, canary_percent=50, reason="test", decided_by="tests")
    write_state(str(project / "var" / "storage"), state)

    client = serve()  # a (re)started server: the canary's files are corrupt, the champion's are not
    health = client.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "degraded" and body["champion_version"] == 1 and body["mode"] == "off"
    assert any("challenger v2 cannot be loaded" in reason for reason in body["reasons"]), body
    answers = client.post("/predict", json={"rows": records[:40]})
    assert answers.status_code == 200 and {p["model_version"] for p in answers.json()["predictions"]} == {1}
    metadata = client.get("/metadata").json()
    assert metadata["challenger"] is None and metadata["traffic"]["canary_percent"] == 0.0
    assert client.get("/health", params={"strict": "true"}).status_code == 503


def test_a_champion_that_cannot_load_is_reported_stale(project, serve, records):
    registry, name = _registry(project), load_params(project / "params.yaml").model_name
    client = serve()
    assert client.get("/health").json()["status"] == "ok"
    _corrupt_registry_copy(registry, name, 2)
    registry.client().set_registered_model_alias(name, CHAMPION, "2")  # as a hand edit would: no verification

    body = _wait(client, lambda h: any(p["kind"] == "stale" for p in h["problems"]), "report the stale champion")
    assert body["status"] == "degraded" and body["champion_version"] == 1
    stale = next(p["reason"] for p in body["problems"] if p["kind"] == "stale")
    assert "serving champion v1" in stale and "registry's champion is v2" in stale
    assert any("refresh failed" in reason and "v2" in reason for reason in body["reasons"]), body
    assert client.post("/predict", json={"rows": records[:5]}).status_code == 200

    registry.client().set_registered_model_alias(name, CHAMPION, "1")
    _wait(client, lambda h: h["status"] == "ok", "recover once the registry names v1 again")


def test_a_server_whose_champion_cannot_load_at_start_never_says_previous_models_serve(project, serve, records):
    registry, name = _registry(project), load_params(project / "params.yaml").model_name
    champion = registry.alias_version(name, CHAMPION)
    _corrupt_registry_copy(registry, name, champion)
    shutil.rmtree(project / "var" / "storage" / "models" / "registered", ignore_errors=True)  # nothing published

    client = serve()
    health = client.get("/health")
    assert health.status_code == 503, health.text
    reasons = [p["reason"] for p in health.json()["problems"]]
    assert any("refresh failed" in reason for reason in reasons), reasons
    assert not any("previous models keep serving" in reason for reason in reasons), reasons
    assert any("no model serves yet" in reason for reason in reasons), reasons
    assert client.post("/predict", json={"rows": records[:5]}).status_code == 503


def test_a_version_whose_tag_is_edited_to_another_versions_sha_keeps_its_own_model_and_is_degraded(
    project, serve, records
):
    """v2's `manifest_sha256` tag set by hand to v1's: the server must not load v1's published copy as "v2"."""
    registry, name = _registry(project), load_params(project / "params.yaml").model_name
    tags = {v: registry.version_info(name, v)["tags"]["manifest_sha256"] for v in (1, 2)}
    client = serve()
    v1_scores = [p["score"] for p in client.post("/predict", json={"rows": records[:20]}).json()["predictions"]]
    registry.client().set_registered_model_alias(name, CHAMPION, "2")
    _wait(client, lambda h: h["status"] == "ok" and h["champion_version"] == 2, "serve v2")
    v2 = client.post("/predict", json={"rows": records[:20]}).json()["predictions"]
    v2_scores = [p["score"] for p in v2]
    assert v2_scores != v1_scores and {p["model_version"] for p in v2} == {2}

    registry.client().set_model_version_tag(name, "2", "manifest_sha256", tags[1])  # as a hand edit in the UI
    body = _wait(client, lambda h: any(p["kind"] == "stale" for p in h["problems"]), "report the edited tag")
    assert body["status"] == "degraded" and body["champion_version"] == 2
    refresh = next(p["reason"] for p in body["problems"] if p["kind"] == "refresh")
    assert f"v2: its manifest_sha256 tag {tags[1]}" in refresh and f"manifest.json ({tags[2]})" in refresh, refresh
    answers = client.post("/predict", json={"rows": records[:20]}).json()["predictions"]
    assert {p["model_version"] for p in answers} == {2}
    assert [p["score"] for p in answers] == v2_scores  # v2's own model, never v1's under v2's number
    assert client.get("/metadata").json()["champion"]["manifest_sha256"] == tags[2]

    registry.client().set_model_version_tag(name, "2", "manifest_sha256", tags[2])  # put back
    _wait(client, lambda h: h["status"] == "ok" and h["champion_version"] == 2, "recover once the tag is put back")
