"""A registered version's published copy in the artifact store, checked before anyone is sent to it.

Batch scoring, the cloud endpoints and the local server load a version from its published copy
(resources/layout.py `published_model`, keyed by the manifest sha256). `published_copy` checks every
file of that copy against the registered manifest and, when one does not match (a corrupt, partial
or tampered copy), moves the copy aside and publishes the registry's verified download in its
place: one bad copy does not fail every night until someone deletes it.
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


def published_copy(store: ArtifactStore, registry: ModelRegistry, name: str, version: int) -> tuple[str, str | None]:
    """The version's verified published copy, and a note when it had to be (re-)published.

    Raises ArtifactIntegrityError when the registry's own copy does not verify (nothing is published then).
    """
    expected = registry.version_info(name, version)["tags"].get(MANIFEST_TAG)
    if not expected:
        raise ArtifactIntegrityError(f"model {name!r} v{version} has no {MANIFEST_TAG} tag: it cannot be verified")
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
