"""A registered version's published copy in the artifact store, checked before anyone is sent to it.

Batch scoring, the cloud endpoints and the local server load a version from its published copy
(resources/layout.py `published_model`, keyed by the manifest sha256). `published_copy` checks every
file of that copy against the registered manifest and, when one does not match (a corrupt, partial
or tampered copy), moves the copy aside and publishes the registry's verified download in its
place: one bad copy does not fail every night until someone deletes it.

A copy is keyed by the sha its version's `manifest_sha256` tag names, and MLflow lets anyone edit a tag:
a tag set to another version's sha would find that version's copy, which verifies against that same
sha, and serve its model under this version's number. So before a version is sent to a copy, the
version's own registered manifest.json (one small download) must hash to the tag's sha; a version and
MLflow run found to match are recorded (`layout.published_for`) and not checked again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import tempfile
from pathlib import Path

import fsspec

from ml import io
from ml.artifact import MANIFEST, ArtifactExistsError, ArtifactIntegrityError, publish, verify_artifact
from resources import layout
from resources.registry import MANIFEST_TAG, ModelRegistry
from resources.storage import ArtifactStore

log = logging.getLogger(__name__)


def _problem(store: ArtifactStore, uri: str, expected: str) -> str | None:
    """Why the copy at `uri` cannot be used, or None when every file matches the registered manifest."""
    if not io.exists(f"{uri}/{MANIFEST}"):
        # Locally, something at the path without a manifest (a stray file, a folder put there by hand) is set
        # aside like a corrupt copy: left there, it would block every publish at its path. In an object store
        # it may be another process's upload in progress (the manifest goes last); publishing writes over it.
        return f"incomplete: no {MANIFEST}" if not io.is_remote(uri) and io.exists(uri) else "missing"
    with store.local_copy(uri) as local:
        try:
            verify_artifact(local, expected)
        except ArtifactIntegrityError as error:
            return str(error).replace(str(local), uri)
    return None


def _set_aside(uri: str) -> str:
    """Move a bad copy out of the way, kept beside it for a look (local), or removed (object stores)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    if io.is_remote(uri):
        fs, path = fsspec.core.url_to_fs(uri)
        fs.rm(path, recursive=True)
        return "removed"
    target = Path(uri)
    aside = target.with_name(f".{target.name}.corrupt-{stamp}")
    try:
        target.rename(aside)
    except FileNotFoundError:  # another process set it aside first
        return "already set aside"
    return f"kept at {aside}"


def _confirmed_versions(store: ArtifactStore, name: str, sha: str) -> list[str]:
    """The versions recorded as confirmed for the copy `sha` (for a message), e.g. ["v1"]."""
    try:
        fs, path = fsspec.core.url_to_fs(layout.published_for(store, name, sha))
        names = sorted(Path(entry).name.removesuffix(".json") for entry in fs.ls(path, detail=False))
    except Exception:  # noqa: BLE001 - only a message's detail
        return []
    return sorted((n for n in names if n.startswith("v") and n[1:].isdigit()), key=lambda n: int(n[1:]))


def _confirm(store: ArtifactStore, registry: ModelRegistry, name: str, info: dict, expected: str) -> None:
    """Raise ArtifactIntegrityError unless the version's own registered manifest hashes to `expected`, the
    sha its tag names: checked once per version and MLflow run, then recorded beside the published copies."""
    version = info["version"]
    record_uri = layout.published_for(store, name, expected, version)
    mine = {"model": name, "version": version, "run_id": info["run_id"], "manifest_sha256": expected}
    with contextlib.suppress(Exception):  # unreadable or absent: checked again below
        recorded = io.read_json(record_uri) if io.exists(record_uri) else {}
        if {key: recorded.get(key) for key in mine} == mine:
            return
    actual = registry.registered_manifest_sha256(name, version)
    if actual != expected:
        others = _confirmed_versions(store, name, expected)
        whose = f", the files published for {', '.join(others)}" if others else ""
        raise ArtifactIntegrityError(
            f"model {name!r} v{version}: its {MANIFEST_TAG} tag {expected} is not the sha256 of its own registered "
            f"{MANIFEST} ({actual}): the tag was changed after registration and names other files{whose}; nothing "
            f"is loaded as v{version} from them. Set the tag back to {actual}, or register a new version"
        )
    record = mine | {"source": info.get("source"), "confirmed_at": dt.datetime.now(dt.UTC).isoformat()}
    try:
        io.write_json(record, record_uri)
    except Exception as error:  # noqa: BLE001 - the check holds; it is only made again next time
        log.warning("%s v%s: could not record its confirmed manifest at %s (%s)", name, version, record_uri, error)


def published_copy(store: ArtifactStore, registry: ModelRegistry, name: str, version: int) -> tuple[str, str | None]:
    """The version's verified published copy, and a note when it had to be (re-)published.

    Raises ArtifactIntegrityError when the registry's own copy does not verify (nothing is published then), or
    when the version's `manifest_sha256` tag is not the sha256 of its own registered manifest (nothing is used).
    """
    info = registry.version_info(name, version)
    expected = info["tags"].get(MANIFEST_TAG)
    if not expected:
        raise ArtifactIntegrityError(f"model {name!r} v{version} has no {MANIFEST_TAG} tag: it cannot be verified")
    _confirm(store, registry, name, info, expected)  # the tag may have been edited to name another version's copy
    uri = layout.published_model(store, name, expected)
    problem = _problem(store, uri, expected)
    if problem is None:
        return uri, None
    note = None
    if problem != "missing":
        where = _set_aside(uri)
        note = f"the published copy of {name} v{version} did not verify ({problem}); set aside ({where})"
        log.warning("%s; re-publishing it from the registry", note)
    # ArtifactExistsError: another process published it meanwhile; checked below.
    with tempfile.TemporaryDirectory(prefix="keel-publish-") as tmp, contextlib.suppress(ArtifactExistsError):
        publish(registry.download(name, version, Path(tmp) / "model"), uri)
    again = _problem(store, uri, expected)
    if again is not None:
        raise ArtifactIntegrityError(f"{name} v{version}: the published copy at {uri} does not verify: {again}")
    return uri, None if note is None else f"{note} and re-published from the registry's verified copy"
