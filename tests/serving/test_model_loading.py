"""Models load verified from the published copy in the store, published (again) from the registry when it is
missing or does not verify."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ml.artifact import ArtifactIntegrityError
from resources import layout
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore
from serving.models import ModelSource
from tests.conftest import relocate_mlflow


@pytest.fixture
def source(serving_template, tmp_path) -> ModelSource:
    project = tmp_path / "project"
    shutil.copytree(serving_template, project, symlinks=True)
    relocate_mlflow(project, serving_template)
    registry = ModelRegistry(root=str(project / "var" / "mlflow"))
    return ModelSource(registry, ArtifactStore(root=str(project / "var" / "storage")), "telco_churn")


def test_the_published_copy_is_used_and_checked(source, tmp_path, monkeypatch):
    from_registry = source.load(1)
    published = layout.published_model(source.store, source.model_name, from_registry.manifest_sha256)
    assert Path(published, "manifest.json").is_file()  # the first load published the registry's copy

    def no_download(*_, **__):
        raise AssertionError("the registry was asked although the store has a published copy")

    monkeypatch.setattr(type(source.registry), "download", no_download)
    loaded = source.load(1)
    assert loaded.manifest_sha256 == from_registry.manifest_sha256
    assert str(loaded.predictor.directory) == published

    model_file = next(p for p in loaded.predictor.directory.iterdir() if p.name.startswith("model"))
    model_file.write_text(model_file.read_text() + "\n", encoding="utf-8")  # a tampered copy
    monkeypatch.undo()
    repaired = source.load(1)  # set aside and published again from the registry's verified copy
    assert str(repaired.predictor.directory) == published and "re-published" in repaired.note
    assert list(Path(published).parent.glob(f".{Path(published).name}.corrupt-*"))
    assert source.load(1).note is None  # the copy verifies now

    registry_copy = Path(source.registry.version_info(source.model_name, 1)["source"].removeprefix("file://"))
    (registry_copy / model_file.name).write_text("tampered too\n", encoding="utf-8")
    model_file.write_text(model_file.read_text() + "\n", encoding="utf-8")
    with pytest.raises(ArtifactIntegrityError):  # no verified copy anywhere: nothing is loaded
        source.load(1)
