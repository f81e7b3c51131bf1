"""Reading and writing files by path or fsspec URI, with all-or-nothing writes.

Every output of the project goes through `atomic_output`: a reader sees either the previous file or
the complete new one, never a partial file, even when the writer is killed mid-way. A killed
writer's hidden temporary file (`.<name>.tmp-<pid>-<random>`) is removed by the next write into the
same folder once its process is gone; a full disk is reported naming the file and the free space.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import fsspec
import pandas as pd
import pyarrow
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem


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


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}$")
STALE_SECONDS = 24 * 3600  # a temporary file nobody wrote to for a day is stale whatever its pid says


class DiskFullError(OSError):
    """No space left while writing an output; the message names the file, the free space and what to do."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Delete the temporary files that killed writers left in `folder`; a live writer's file is left alone.

    A temporary file names its writer's pid; it is stale when that process is gone (on this machine)
    or when it has not been written to for STALE_SECONDS.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    now = time.time()
    for entry in entries:
        match = TEMPORARY.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match["pid"])
        try:
            idle = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue  # its writer finished meanwhile
        if pid == os.getpid() or (_alive(pid) and idle < STALE_SECONDS):
            continue
        Path(entry.path).unlink(missing_ok=True)
        removed.append(entry.name)
    return sorted(removed)


def _disk_full(uri: str, where: Path) -> DiskFullError:
    try:
        free = f"{shutil.disk_usage(where).free / 2**20:,.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        errno.ENOSPC,
        f"no space left on the device while writing {uri} ({free} on the file system of {where}); "
        "the previous version of the file is untouched: free some space (or move the artifact store) and re-run",
    )


@contextlib.contextmanager
def atomic_output(uri: str) -> Iterator[Path]:
    """Yield a local temporary path; on success it replaces `uri` in one step, on error it is removed.

    Local targets are replaced with os.replace (atomic on POSIX within a file system). Remote targets
    are uploaded in one PUT, which object stores make visible all at once. Running out of space
    raises DiskFullError naming `uri`.
    """
    if is_remote(uri):
        with tempfile.TemporaryDirectory(prefix="keel-") as tmp_dir:
            tmp = Path(tmp_dir) / "payload"
            try:
                yield tmp
                fs, path = fsspec.core.url_to_fs(uri)
                fs.put_file(str(tmp), path)
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    raise _disk_full(uri, Path(tmp_dir)) from error
                raise
        return
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as error:
        if error.errno == errno.ENOSPC and not isinstance(error, DiskFullError):
            raise _disk_full(uri, target.parent) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(frame: pd.DataFrame, uri: str) -> None:
    with atomic_output(uri) as tmp:
        frame.to_parquet(tmp, index=False)


def write_json(document: Any, uri: str) -> None:
    with atomic_output(uri) as tmp:
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_parquet(uri: str) -> pd.DataFrame:
    _regular_file(uri)
    if is_remote(uri):
        # Through fsspec, as every write is: given a gs:// string, pandas would pick pyarrow's own GCS
        # client, which ignores STORAGE_EMULATOR_HOST and gcsfs's credential chain (it hangs off GCP).
        with fsspec.open(uri, "rb") as handle:
            return pd.read_parquet(handle)
    return pd.read_parquet(uri)


class ChangedFileError(ValueError):
    """A file is not the version that was checked: it changed since; the message names it and both md5s."""


def _bytes_and_md5(uri: str) -> tuple[bytes, str]:
    _regular_file(uri)
    with fsspec.open(uri, "rb") as handle:
        data = handle.read()
    return data, hashlib.md5(data).hexdigest()


def read_parquet_and_md5(uri: str) -> tuple[pd.DataFrame, str]:
    """The file's rows and the md5 of its bytes (DVC's hash of a file), from one read."""
    data, md5 = _bytes_and_md5(uri)
    return pd.read_parquet(pyarrow.BufferReader(data)), md5


class UnreadableParquetError(ValueError):
    """A file is not a Parquet file pyarrow can read; the message names it."""


class NotARegularFileError(UnreadableParquetError):
    """A local path is a FIFO, a device or a folder (any file, Parquet or JSON): it was not read."""


def _regular_file(uri: str) -> None:
    """UnreadableParquetError naming a local path that is no regular file (a link is what it points to):
    a FIFO would block its reader for good and a link to /dev/zero would never end, so neither is read."""
    # fsspec's own reading of the URI, without making a file system: `local://` and `file:` name
    # local files too
    protocol, _ = fsspec.core.split_protocol(uri)
    if protocol not in (None, "file", "local"):
        return
    path = LocalFileSystem._strip_protocol(uri)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: the open that follows names it
    if not stat.S_ISREG(mode):
        kind = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device"}.get(
            stat.S_IFMT(mode), "not a regular file"
        )
        raise NotARegularFileError(f"{uri} is {kind}, not a regular file; it was not read")


def read_table_and_md5(uri: str) -> tuple[pyarrow.Table, str]:
    """The file's Arrow table (its column types as written) and the md5 of its bytes, from one read;
    UnreadableParquetError naming the file when it is no Parquet file."""
    _regular_file(uri)
    with fsspec.open(uri, "rb") as handle:
        data = handle.read()
    try:
        table = pq.read_table(pyarrow.BufferReader(data))
    except (pyarrow.ArrowInvalid, OSError) as error:
        raise UnreadableParquetError(f"{uri} is not a readable Parquet file ({error})") from None
    return table, hashlib.md5(data).hexdigest()


@contextlib.contextmanager
def open_parquet(uri: str) -> Iterator[pq.ParquetFile]:
    """A Parquet file opened for reading by row group or batch, never whole (local path or fsspec URI)."""
    _regular_file(uri)
    with fsspec.open(uri, "rb") as handle, pq.ParquetFile(handle) as parquet:
        yield parquet


@contextlib.contextmanager
def open_parquet_and_md5(uri: str) -> Iterator[tuple[pq.ParquetFile, str]]:
    """The file opened for reading by batch, and the md5 of its bytes (DVC's hash), without loading it.

    One open handle serves both, so a file replaced meanwhile (a new version renamed onto it) is
    still the version that was hashed.
    """
    _regular_file(uri)
    with fsspec.open(uri, "rb") as handle:
        md5 = handle_digest(handle, "md5")
        handle.seek(0)
        try:
            parquet = pq.ParquetFile(handle)
        except (pyarrow.ArrowInvalid, OSError) as error:
            raise UnreadableParquetError(f"{uri} is not a readable Parquet file ({error})") from None
        with parquet:
            yield parquet, md5


def read_checked_parquet(uri: str, md5: str, what: str) -> pd.DataFrame:
    """The file's rows, if its bytes are still the version `what` checked (md5); one read, compared before it is
    parsed (a checked file emptied or cut short is a changed file, not a Parquet error)."""
    try:
        data, actual = _bytes_and_md5(uri)
    except FileNotFoundError:
        raise ChangedFileError(
            f"{uri} is gone: it is the version {what} last materialized and checked ({md5}), and it was "
            f"deleted outside Dagster. Put it back, or deliver and materialize {what} with its checks again."
        ) from None
    if actual != md5:
        raise ChangedFileError(
            f"{uri} (md5 {actual}) is not the version {what} last materialized and checked ({md5}); "
            f"it changed outside Dagster. Materialize {what} with its checks first."
        )
    return pd.read_parquet(pyarrow.BufferReader(data))


def read_json(uri: str) -> Any:
    _regular_file(uri)  # a link to /dev/zero under rollout.json filled a server's memory in seconds
    with fsspec.open(uri, "r", encoding="utf-8") as handle:
        return json.load(handle)


def file_digest(uri: str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes. md5 of a single file is also DVC's hash of it."""
    _regular_file(uri)
    with fsspec.open(uri, "rb") as handle:
        return handle_digest(handle, algorithm)


def handle_digest(handle: IO[bytes], algorithm: str = "sha256") -> str:
    """Hex digest of an open file's bytes from its start, read in 1 MiB blocks."""
    handle.seek(0)
    digest = hashlib.new(algorithm)
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def decimals_as_float64(data: pyarrow.Table | pyarrow.RecordBatch, columns: Iterable[str]):
    """`data` with those of `columns` that hold decimals (how warehouses export money: decimal128(10, 2))
    as float64, the others as they are.

    Each value becomes the double nearest to it, as float(Decimal) and a CSV reader give (Arrow's own
    decimal-to-float cast can be one unit in the last place off). A spec's numeric columns are read so
    wherever rows are read: the raw import (ml/sources.py), a day's data checks
    (data_checks/validation.py) and scoring (ml/score.py), so training, checks and scores see one value.
    """
    for name in columns:
        index = data.schema.get_field_index(name)
        if index >= 0 and pyarrow.types.is_decimal(data.schema.field(index).type):
            exact = data.column(index).cast(pyarrow.string()).cast(pyarrow.float64())
            data = data.set_column(index, data.schema.field(index).with_type(pyarrow.float64()), exact)
    return data


def exists(uri: str) -> bool:
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.exists(path)
