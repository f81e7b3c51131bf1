"""The model artifact directory and its manifest: what a trained model is on disk, and how it is checked.

A model artifact is a flat directory of non-executable files (the model in its native text or JSON
format, the feature state as JSON, the holdout metrics as JSON, plots as PNG) plus `manifest.json`,
which lists every other file with its size and sha256. Loading verifies every file against the
manifest, so a tampered or truncated file is refused before anything is parsed. The registry also
records the manifest's own sha256, so replacing a file *and* its manifest entry is caught too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec

from ml import io
from ml.io import file_digest, write_json

MANIFEST = "manifest.json"
FORMAT = "keel-model"
FORMAT_VERSION = 1


class ArtifactIntegrityError(RuntimeError):
    """The artifact on disk is not the one its manifest (or the registry) describes."""


class ArtifactExistsError(ValueError):
    """An artifact is already at the target; artifacts are never overwritten."""


def _payload_files(directory: Path) -> list[str]:
    return sorted(
        str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file() and path.name != MANIFEST
    )


def write_manifest(directory: str | Path, info: dict[str, Any]) -> dict[str, Any]:
    """Hash every file in `directory` and write the manifest; `info` adds descriptive fields."""
    directory = Path(directory)
    files = {
        name: {"sha256": file_digest(str(directory / name)), "bytes": (directory / name).stat().st_size}
        for name in _payload_files(directory)
    }
    manifest = {**info, "format": FORMAT, "format_version": FORMAT_VERSION, "files": files}
    write_json(manifest, str(directory / MANIFEST))
    return manifest


def manifest_sha256(directory: str | Path) -> str:
    return file_digest(str(Path(directory) / MANIFEST))


def verify_artifact(directory: str | Path, expected_manifest_sha256: str | None = None) -> dict[str, Any]:
    """Return the manifest after checking every listed file; raise ArtifactIntegrityError naming the file."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactIntegrityError(f"{directory}: no {MANIFEST}; this is not a complete model artifact")
    if expected_manifest_sha256 is not None:
        actual = file_digest(str(manifest_path))
        if actual != expected_manifest_sha256:
            raise ArtifactIntegrityError(
                f"{manifest_path}: sha256 {actual} does not match the registered {expected_manifest_sha256}; "
                "the manifest was replaced or modified"
            )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise ArtifactIntegrityError(f"{manifest_path}: unreadable manifest ({error})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactIntegrityError(
            f"{manifest_path}: format {manifest.get('format')!r} v{manifest.get('format_version')!r} is not "
            f"{FORMAT!r} v{FORMAT_VERSION}"
        )
    for name, expected in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"{path}: listed in the manifest but missing")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise ArtifactIntegrityError(
                f"{path}: {size} bytes, the manifest says {expected['bytes']}; the file is truncated or modified"
            )
        actual = file_digest(str(path))
        if actual != expected["sha256"]:
            raise ArtifactIntegrityError(
                f"{path}: sha256 {actual} does not match the manifest ({expected['sha256']}); the file was modified"
            )
    extra = sorted(set(_payload_files(directory)) - set(files))
    if extra:
        raise ArtifactIntegrityError(f"{directory}: files not in the manifest: {', '.join(extra)}")
    return manifest


def publish(directory: Path, out: str) -> str:
    """Make the finished artifact visible at `out` all at once (manifest last for object stores)."""
    if io.is_remote(out):
        fs, base = fsspec.core.url_to_fs(out)
        names = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
        for name in sorted(names, key=lambda n: n == MANIFEST):  # readers wait for the manifest
            fs.put_file(str(directory / name), f"{base.rstrip('/')}/{name}")
        return out
    target = Path(io.resolve(out))
    if target.exists():
        raise ArtifactExistsError(f"{target} already exists; artifacts are never overwritten, pick a new --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        shutil.copytree(directory, staging, dirs_exist_ok=True)
        staging.rename(target)  # one rename: a reader sees no directory or the complete one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
