"""The model container the cloud endpoints run: verified loading, the platforms' routes, the request log's arms."""

import datetime as dt
import shutil

import pytest
from fastapi.testclient import TestClient

from ml.artifact import manifest_sha256
from ml.predictor import Predictor
from serving.cloud.container import create_app
from serving.request_log import read_day
from serving.scoring import rows_batch
from serving.state import RolloutState, write_state
from tests.serving.project import REPO


@pytest.fixture(scope="module")
def artifact(serving_template, tmp_path_factory):
    """v2 of the serving test project, published as the endpoints publish it."""
    from resources.registry import ModelRegistry

    registry = ModelRegistry(root=str(serving_template / "var" / "mlflow"))
    folder = tmp_path_factory.mktemp("published") / "model"
    return registry.download("telco_churn", 2, folder)


def environ(artifact, store, **extra) -> dict[str, str]:
    return {
        "KEEL_MODEL_URI": str(artifact),
        "KEEL_MODEL_SHA256": manifest_sha256(artifact),
        "KEEL_MODEL_VERSION": "2",
        "KEEL_STORE_ROOT": str(store),
        **extra,
    }


def test_the_routes_of_each_platform_answer_the_models_scores(artifact, records, tmp_path):
    app = create_app(REPO, environ(artifact, tmp_path / "store"))
    rows = [{**r, "request_id": f"c-{n}"} for n, r in enumerate(records[:20])]
    expected = Predictor.load(artifact).predict(rows_batch(rows, Predictor.load(artifact)))
    with TestClient(app) as client:
        assert client.get("/ping").status_code == 200 and client.get("/health").json()["model_version"] == 2
        for route, key in (("/predict", "rows"), ("/invocations", "rows"), ("/predict", "instances")):
            response = client.post(route, json={key: rows})
            assert response.status_code == 200, response.text
            answer = response.json()["predictions"]
            assert [p["request_id"] for p in answer] == [r["request_id"] for r in rows]
            assert [p["score"] for p in answer] == pytest.approx(list(expected))
        refused = client.post("/predict", json={"rows": [{**rows[0], "tenure": "twelve"}]})
        assert refused.status_code == 422 and "tenure" in refused.json()["error"]


def test_the_arm_follows_the_rollout_and_is_logged(artifact, records, tmp_path, monkeypatch):
    import serving.cloud.container as container

    monkeypatch.setattr(container, "STATE_SECONDS", 0.0)
    store = tmp_path / "store"
    app = create_app(REPO, environ(artifact, store))
    with TestClient(app) as client:
        client.post("/predict", json={"rows": [{**records[0], "request_id": "as-champion"}]})
        write_state(str(store), RolloutState(mode="canary", challenger_version=2, canary_percent=10, reason="t"))
        client.post("/predict", json={"rows": [{**records[1], "request_id": "as-canary"}]})
        write_state(str(store), RolloutState(mode="shadow", challenger_version=2, reason="t"))
        client.post("/predict", json={"rows": [{**records[2], "request_id": "as-shadow"}]})
    # Stopped cleanly: its last rows are written before it ends (no wait for a flush that never comes).
    log = read_day(str(store), dt.datetime.now(dt.UTC).date())
    assert len(log) == 3, log
    arms = dict(zip(log["request_id"], zip(log["arm"], log["served"], strict=True), strict=True))
    assert arms == {"as-champion": ("champion", True), "as-canary": ("canary", True), "as-shadow": ("shadow", False)}


def test_a_copy_that_does_not_match_its_hash_is_refused(artifact, tmp_path):
    tampered = tmp_path / "model"
    shutil.copytree(artifact, tampered)
    (tampered / "metrics.json").write_text("{}")
    with pytest.raises(Exception, match="metrics.json"):
        create_app(REPO, environ(artifact, tmp_path / "store", KEEL_MODEL_URI=str(tampered)))


def test_the_serving_image_starts_from_its_copied_files_alone(tmp_path):
    """As in Dockerfile.serving: only the COPY'd folders on the path (plus the locked packages)."""
    import subprocess
    import sys

    copied = [
        line.split()[1] for line in (REPO / "Dockerfile.serving").read_text().splitlines() if line.startswith("COPY ")
    ]
    image = tmp_path / "opt" / "keel"
    for source in copied:
        if source.endswith("/"):
            shutil.copytree(REPO / source, image / source, ignore=shutil.ignore_patterns("__pycache__"))
        elif source not in {"pyproject.toml", "uv.lock"}:
            image.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / source, image / source)
    code = "import sys, runpy; sys.path.insert(0, '.'); sys.argv = ['x', '--help']; runpy.run_module('serving.cloud.container', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=image, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "python -m serving.cloud.container" in proc.stdout
