"""The manifest: every file hashed, and any tampering, truncation or extra file refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml.artifact import ArtifactIntegrityError, manifest_sha256, verify_artifact, write_manifest


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    (tmp_path / "model.txt").write_text("tree\n" * 100)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "roc.png").write_bytes(b"\x89PNG fake")
    write_manifest(tmp_path, {"model_family": "lightgbm"})
    return tmp_path


def test_an_intact_artifact_verifies(artifact):
    manifest = verify_artifact(artifact, manifest_sha256(artifact))
    assert set(manifest["files"]) == {"model.txt", "plots/roc.png"}
    assert manifest["model_family"] == "lightgbm"


def test_a_modified_file_is_refused_by_name(artifact):
    data = bytearray((artifact / "model.txt").read_bytes())
    data[10] ^= 0x01  # same size, one bit different
    (artifact / "model.txt").write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"model\.txt: sha256 .* does not match the manifest"):
        verify_artifact(artifact)


def test_a_truncated_file_is_refused(artifact):
    (artifact / "model.txt").write_text("tree\n")
    with pytest.raises(ArtifactIntegrityError, match=r"model\.txt: 5 bytes, the manifest says 500"):
        verify_artifact(artifact)


def test_a_missing_or_extra_file_is_refused(artifact):
    (artifact / "plots" / "extra.png").write_bytes(b"x")
    with pytest.raises(ArtifactIntegrityError, match=r"files not in the manifest: plots/extra\.png"):
        verify_artifact(artifact)
    (artifact / "plots" / "extra.png").unlink()
    (artifact / "plots" / "roc.png").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"roc\.png: listed in the manifest but missing"):
        verify_artifact(artifact)


def test_a_consistently_rewritten_manifest_is_caught_by_the_registered_hash(artifact):
    registered = manifest_sha256(artifact)
    (artifact / "model.txt").write_text("evil\n" * 100)
    write_manifest(artifact, {"model_family": "lightgbm"})
    verify_artifact(artifact)  # self-consistent again ...
    with pytest.raises(ArtifactIntegrityError, match="does not match the registered"):
        verify_artifact(artifact, registered)  # ... but not the artifact that was registered


def test_no_manifest_or_a_foreign_format_is_refused(artifact):
    manifest = json.loads((artifact / "manifest.json").read_text())
    (artifact / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ArtifactIntegrityError, match="is not 'keel-model' v1"):
        verify_artifact(artifact)
    (artifact / "manifest.json").unlink()
    with pytest.raises(ArtifactIntegrityError, match="no manifest.json"):
        verify_artifact(artifact)
