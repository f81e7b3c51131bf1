"""Models load verified: from the published copy in the store when there is one, else from the registry."""

from __future__ import annotations

import shutil

import pytest

from ml.artifact import ArtifactIntegrityError, publish
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
    publish(source.registry.download(source.model_name, 1, tmp_path / "v1"), published)

    def no_download(*_, **__):
        raise AssertionError("the registry was asked although the store has a published copy")

    monkeypatch.setattr(type(source.registry), "download", no_download)
    loaded = source.load(1)
    assert loaded.manifest_sha256 == from_registry.manifest_sha256
    assert str(loaded.predictor.directory) == published

    model_file = next(p for p in loaded.predictor.directory.iterdir() if p.name.startswith("model"))
    model_file.write_text(model_file.read_text() + "\n", encoding="utf-8")  # a tampered copy
    with pytest.raises(ArtifactIntegrityError):
        source.load(1)
