"""The champion's copy in the artifact store, which the compute backends score with, is keyed by what it contains."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets.batch_predictions import published_model
from ml.artifact import manifest_sha256, verify_artifact
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore
from tests.conftest import REPO
from tests.resources.test_registry import make_artifact


@pytest.fixture
def stores(tmp_path, monkeypatch) -> tuple[ArtifactStore, ModelRegistry]:
    """A local artifact store and MLflow registry of the project's params, in the test's folder."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = ParamsResource(project_dir=str(REPO))
    return ArtifactStore(root=str(tmp_path / "storage")), ModelRegistry(root=str(tmp_path / "mlflow"), params=params)


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


def test_the_same_content_is_published_once(tmp_path, stores):
    storage, registry = stores
    artifact = make_artifact(tmp_path / "a", "a")
    run_id = registry.log_training_run("e", "a", {}, {}, {}, artifact)
    for _ in range(2):
        registry.register(registry.model_name, run_id, {"manifest_sha256": manifest_sha256(artifact)})
    assert published_model(storage, registry, 1) == published_model(storage, registry, 2)
    assert len(list(Path(storage.uri("models", "registered", registry.model_name)).iterdir())) == 1


def test_a_corrupt_published_copy_is_published_again_from_the_registry(tmp_path, stores):

    from ml.artifact import ArtifactIntegrityError

    storage, registry = stores
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


def test_a_published_copy_without_its_manifest_is_set_aside_and_published_again(tmp_path, stores):
    """A file, or a folder without manifest.json (a copy cut short), at the copy's path is not "missing": it is
    set aside and the registry's verified copy published, or the endpoint and every night would fail on it."""
    import shutil

    storage, registry = stores
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


def test_a_version_whose_tag_names_another_versions_copy_is_refused_not_scored_with_it(tmp_path, stores):
    """A `manifest_sha256` tag edited in MLflow to another version's sha must not find that version's copy
    (which verifies against that same sha) and score with its model under this version's number."""

    from ml.artifact import ArtifactIntegrityError
    from resources.registry import MANIFEST_TAG

    storage, registry = stores
    shas = {}
    for seed in ("a", "b"):
        artifact = make_artifact(tmp_path / seed, seed)
        run_id = registry.log_training_run("e", seed, {}, {}, {}, artifact)
        shas[seed] = manifest_sha256(artifact)
        registry.register(registry.model_name, run_id, {MANIFEST_TAG: shas[seed]})
    v1_copy = published_model(storage, registry, 1)
    assert verify_artifact(published_model(storage, registry, 2), shas["b"])["model"] == "b"

    registry.client().set_model_version_tag(registry.model_name, "2", MANIFEST_TAG, shas["a"])  # by hand
    with pytest.raises(ArtifactIntegrityError) as refused:
        published_model(storage, registry, 2)
    message = str(refused.value)
    assert f"v2: its {MANIFEST_TAG} tag {shas['a']}" in message and f"manifest.json ({shas['b']})" in message
    assert "published for v1" in message and f"Set the tag back to {shas['b']}" in message
    assert verify_artifact(v1_copy, shas["a"])["model"] == "a"  # v1's copy is left as it is, and v1 still scores
    assert published_model(storage, registry, 1) == v1_copy

    registry.client().set_model_version_tag(registry.model_name, "2", MANIFEST_TAG, shas["b"])  # put back
    assert verify_artifact(published_model(storage, registry, 2), shas["b"])["model"] == "b"


def test_a_version_is_checked_against_its_registered_manifest_once_not_at_every_load(tmp_path, stores, monkeypatch):
    storage, registry = stores
    artifact = make_artifact(tmp_path / "a", "a")
    run_id = registry.log_training_run("e", "a", {}, {}, {}, artifact)
    registry.register(registry.model_name, run_id, {"manifest_sha256": manifest_sha256(artifact)})
    copy = published_model(storage, registry, 1)

    def no_check(*_, **__):
        raise AssertionError("the registered manifest was fetched again for a version already checked")

    monkeypatch.setattr(ModelRegistry, "registered_manifest_sha256", no_check)
    assert published_model(storage, registry, 1) == copy
