"""Reading and writing files by path or fsspec URI, with all-or-nothing writes.

Every output of the project goes through `atomic_output`: a reader sees either the previous file or
the complete new one, never a partial file, even when the writer is killed mid-way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def resolve(uri: str, root: str | Path | None = None) -> str:
    """An absolute local path or a remote URI; relative local paths are taken from `root`."""
    if is_remote(uri):
        return uri
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    return str(path.absolute())


@contextlib.contextmanager
def atomic_output(uri: str) -> Iterator[Path]:
    """Yield a local temporary path; on success it replaces `uri` in one step, on error it is removed.

    Local targets are replaced with os.replace (atomic on POSIX within a file system). Remote targets
    are uploaded in one PUT, which object stores make visible all at once.
    """
    if is_remote(uri):
        with tempfile.TemporaryDirectory(prefix="keel-") as tmp_dir:
            tmp = Path(tmp_dir) / "payload"
            yield tmp
            fs, path = fsspec.core.url_to_fs(uri)
            fs.put_file(str(tmp), path)
        return
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(frame: pd.DataFrame, uri: str) -> None:
    with atomic_output(uri) as tmp:
        frame.to_parquet(tmp, index=False)


def write_json(document: Any, uri: str) -> None:
    with atomic_output(uri) as tmp:
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_parquet(uri: str) -> pd.DataFrame:
    if is_remote(uri):
        # Through fsspec, as every write is: given a gs:// string, pandas would pick pyarrow's own GCS
        # client, which ignores STORAGE_EMULATOR_HOST and gcsfs's credential chain (it hangs off GCP).
        with fsspec.open(uri, "rb") as handle:
            return pd.read_parquet(handle)
    return pd.read_parquet(uri)


class ChangedFileError(ValueError):
    """A file is not the version that was checked: it changed since; the message names it and both md5s."""


def read_parquet_and_md5(uri: str) -> tuple[pd.DataFrame, str]:
    """The file's rows and the md5 of its bytes (DVC's hash of a file), from one read."""
    with fsspec.open(uri, "rb") as handle:
        data = handle.read()
    return pd.read_parquet(pyarrow.BufferReader(data)), hashlib.md5(data).hexdigest()


def read_checked_parquet(uri: str, md5: str, what: str) -> pd.DataFrame:
    """The file's rows, if its bytes are still the version `what` checked (md5); one read."""
    frame, actual = read_parquet_and_md5(uri)
    if actual != md5:
        raise ChangedFileError(
            f"{uri} (md5 {actual}) is not the version {what} last materialized and checked ({md5}); "
            f"it changed outside Dagster. Materialize {what} with its checks first."
        )
    return frame


def read_json(uri: str) -> Any:
    with fsspec.open(uri, "r", encoding="utf-8") as handle:
        return json.load(handle)


def file_digest(uri: str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes. md5 of a single file is also DVC's hash of it."""
    digest = hashlib.new(algorithm)
    with fsspec.open(uri, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exists(uri: str) -> bool:
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.exists(path)
