"""The champion's copy in the artifact store, which the compute backends score with, is keyed by what it contains."""

from __future__ import annotations

from pathlib import Path

from assets.batch_predictions import published_model
from ml.artifact import manifest_sha256, verify_artifact
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore
from tests.conftest import REPO
from tests.resources.test_registry import make_artifact


def test_a_new_mlflow_store_reusing_a_version_number_never_scores_with_the_old_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = ParamsResource(project_dir=str(REPO))
    storage = ArtifactStore(root=str(tmp_path / "storage"))

    def register(registry: ModelRegistry, seed: str) -> tuple[int, str]:
        artifact = make_artifact(tmp_path / seed, seed)
        run_id = registry.log_training_run("e", seed, {}, {}, {}, artifact)
        sha = manifest_sha256(artifact)
        return registry.register(registry.model_name, run_id, {"manifest_sha256": sha}), sha

    old = ModelRegistry(root=str(tmp_path / "mlflow-old"), params=params)
    assert register(old, "a")[0] == 1
    old_copy = published_model(storage, old, 1)
    # The MLflow database is lost: a new store numbers a different model v1 again.
    new = ModelRegistry(root=str(tmp_path / "mlflow-new"), params=params)
    version, sha = register(new, "b")
    assert version == 1
    new_copy = published_model(storage, new, 1)
    assert new_copy != old_copy and Path(new_copy).name == sha
    assert verify_artifact(new_copy, sha)["model"] == "b"  # the scorer's check passes on the new copy
    assert published_model(storage, old, 1) == old_copy and verify_artifact(old_copy)["model"] == "a"


def test_the_same_content_is_published_once(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = ParamsResource(project_dir=str(REPO))
    storage = ArtifactStore(root=str(tmp_path / "storage"))
    registry = ModelRegistry(root=str(tmp_path / "mlflow"), params=params)
    artifact = make_artifact(tmp_path / "a", "a")
    run_id = registry.log_training_run("e", "a", {}, {}, {}, artifact)
    for _ in range(2):
        registry.register(registry.model_name, run_id, {"manifest_sha256": manifest_sha256(artifact)})
    assert published_model(storage, registry, 1) == published_model(storage, registry, 2)
    assert len(list(Path(storage.uri("models", "registered", registry.model_name)).iterdir())) == 1


def test_a_corrupt_published_copy_is_published_again_from_the_registry(tmp_path, monkeypatch):
    import pytest

    from ml.artifact import ArtifactIntegrityError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = ParamsResource(project_dir=str(REPO))
    storage = ArtifactStore(root=str(tmp_path / "storage"))
    registry = ModelRegistry(root=str(tmp_path / "mlflow"), params=params)
    artifact = make_artifact(tmp_path / "a", "a")
    run_id = registry.log_training_run("e", "a", {}, {}, {}, artifact)
    sha = manifest_sha256(artifact)
    registry.register(registry.model_name, run_id, {"manifest_sha256": sha})
    copy = Path(published_model(storage, registry, 1))
    payload = next(p for p in copy.iterdir() if p.name != "manifest.json")
    payload.write_bytes(payload.read_bytes() + b"x")  # corrupt: every night's scoring would refuse it

    assert published_model(storage, registry, 1) == str(copy)
    assert verify_artifact(copy, sha)["model"] == "a"  # published again from the registry's verified copy
    assert len(list(copy.parent.glob(f".{copy.name}.corrupt-*"))) == 1  # the bad one kept aside for a look

    source = Path(registry.version_info(registry.model_name, 1)["source"].removeprefix("file://"))
    (source / payload.name).write_bytes(b"bad too")
    payload.write_bytes(b"bad")
    with pytest.raises(ArtifactIntegrityError):  # no verified copy anywhere: nothing is published
        published_model(storage, registry, 1)
    assert not copy.exists()


def test_a_published_copy_without_its_manifest_is_set_aside_and_published_again(tmp_path, monkeypatch):
    """A file, or a folder without manifest.json (a copy cut short), at the copy's path is not "missing": it is
    set aside and the registry's verified copy published, or the endpoint and every night would fail on it."""
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = ParamsResource(project_dir=str(REPO))
    storage = ArtifactStore(root=str(tmp_path / "storage"))
    registry = ModelRegistry(root=str(tmp_path / "mlflow"), params=params)
    artifact = make_artifact(tmp_path / "a", "a")
    run_id = registry.log_training_run("e", "a", {}, {}, {}, artifact)
    sha = manifest_sha256(artifact)
    registry.register(registry.model_name, run_id, {"manifest_sha256": sha})
    copy = Path(published_model(storage, registry, 1))

    shutil.rmtree(copy)
    copy.write_text("not a model")  # a file where the folder should be
    assert published_model(storage, registry, 1) == str(copy)
    assert verify_artifact(copy, sha)["model"] == "a"

    (copy / "manifest.json").unlink()  # a folder whose manifest never arrived
    assert published_model(storage, registry, 1) == str(copy)
    assert verify_artifact(copy, sha)["model"] == "a"
    assert len(list(copy.parent.glob(f".{copy.name}.corrupt-*"))) == 2  # both kept aside for a look
