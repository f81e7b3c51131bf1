"""The endpoint's request log: one row per request row and arm, as Parquet files per day.

    <artifact store root>/serving/requests/day=YYYY-MM-DD/<host>-<pid>-<start>-<seq>.parquet

Columns: request_id, received_at (UTC), arm (champion | canary | shadow), model_version,
manifest_sha256, latency_ms (validation + features + prediction for that arm), status (HTTP),
score (null on error), served (this arm's score was returned; false for the shadow), then the
dataset spec's input columns (every spec column but the target): numeric as float64, everything
else as text (booleans as their token, e.g. "1"), so the logged rows score again as they came.

Per row safe: each entry is coerced to the fixed schema on its own before it is written (a request
id that is not text is logged as its text; an input value of the wrong type as null, its status
says why), so one odd row never takes the rows of its flush with it; an entry that cannot be
coerced at all is refused alone and counted under `rows_dropped` with the reason. `append` only
queues, so the request path never pays for the coercion.

Durable: a background thread writes the queue every `flush_seconds` or `flush_rows` entries, each
file all-or-nothing (ml.io.atomic_output), so a request never waits on the disk and a reader never
sees a partial file. A write that fails (store unreachable, folder unwritable, disk full) goes to a
local spool folder instead, and the spooled files are written to the store again at every later
flush (with a backoff up to RETRY_MAX_SECONDS) and when a restarted server starts, under the name
they were meant to have, so a retry never duplicates rows; a spooled file that vanished or no longer
reads back is counted as dropped (and kept aside as `.unreadable`), never holding up the rest; one that
another server of the store wrote (two servers share the spool in a rolling restart) is not. The spool
is bounded (`spool_max_mb`); beyond it rows wait in memory up to `max_pending_rows`, and only beyond that are they dropped,
counted with the reason. `status()` has the counts (served on `/metadata`); once a flush failed or
a row was dropped the counts are also written to `serving/request_log_status/<process>.json`, where
the sensor alert_on_request_log reads them. `read_day` reads every file of a day, skipping (and
naming) a file that is not a request-log Parquet file.

Nothing lost when killed: `append` also writes the entries to the process's write-ahead file in the spool,
`processes/<process>.wal-<segment>` (a JSON line each, flushed to the OS, never synced: it must outlive the
process, not the machine). Each flush takes the queue and starts a new segment under one lock, names its files
`<process>-<segment>.parquet`, and deletes the segment once its rows are in the store or the spool. The server
that finds the process gone (below) writes its segments' rows under those names, skipping a file already in the
store or the spool (the flush got there before the kill), and counts a record cut short as lost.
Each process keeps a marker in the spool, `processes/<process>.json` (pid, host, start, last flush,
rewritten at every flush), removed by `close`. A server of the spool that finds the marker of a process
that is gone (same host: the pid gone, or reused by a process started at another time; another host:
no flush for UNCLEAN_STOP_STALE_SECONDS) takes it (one rename, so it is reported once) and counts it
under `unclean_stops` in its status (with the rows recovered and lost), in /health's problems for
UNCLEAN_STOP_SHOWN_SECONDS, and for the alert sensor; a live neighbour (a rolling restart) is never taken.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml import io
from ml.spec import DatasetSpec, token_key
from serving.state import serving_uri

logger = logging.getLogger(__name__)

ARMS = ("champion", "canary", "shadow")
BASE_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("arm", pa.string()),
        ("model_version", pa.int64()),
        ("manifest_sha256", pa.string()),
        ("latency_ms", pa.float64()),
        ("status", pa.int16()),
        ("score", pa.float64()),
        ("served", pa.bool_()),
    ]
)
RETRY_MAX_SECONDS = 60.0  # a spooled file is tried again at least this often while the store is down
STATUS_FOLDER = "request_log_status"
QUEUE_FULL = "queue full (the store and the spool both failed)"
PROCESS_FOLDER = "processes"  # in the spool: one marker per running process, removed on a clean stop
UNCLEAN_STOP_SHOWN_SECONDS = 3600.0  # /health names a stopped process's lost flush this long
LOOK_AROUND_SECONDS = 10.0  # the spool and stopped neighbours are looked at this often, whatever the flush interval
WAL_CHECK_SECONDS = 0.5  # an idle writer looks this often whether its write-ahead file was removed
# A write-ahead file that failed is called written again only after this long without a failure: on a full disk
# each new segment may take the blocks the last one freed, and the state flipped hundreds of times a minute.
WAL_RECOVERED_SECONDS = 10.0
UNCLEAN_STOP_STALE_SECONDS = 600.0  # another host's process that has not flushed this long (or 3 flushes) is stopped
WAL_SUFFIX = ".wal-"  # processes/<process>.wal-<segment>: the entries of one flush, until they are written
_WAL_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def input_columns(spec: DatasetSpec) -> list[str]:
    """The raw columns a request row carries and the log keeps: the spec's columns without the target."""
    return spec.expected_columns(include_target=False)


def log_schema(spec: DatasetSpec) -> pa.Schema:
    numeric = set(spec.columns.numeric)
    fields = [pa.field(c, pa.float64() if c in numeric else pa.string()) for c in input_columns(spec)]
    return pa.schema([*BASE_SCHEMA, *fields])


def day_folder(store_root: str, day: str | dt.date) -> str:
    return serving_uri(store_root, "requests", f"day={day}")


def logged_days(store_root: str, skipped: list[str] | None = None) -> list[str]:
    """The days the request log has a folder for, from one listing (never one look-up per calendar day).

    A folder named `day=` and no date (`day=2026-12-06.bak`, a copy someone kept) is no day of the log:
    read, its rows would be counted twice. It is left out and named in `skipped`.
    """
    fs, path = fsspec.core.url_to_fs(serving_uri(store_root, "requests"))
    try:
        names = [p.rsplit("/", 1)[-1] for p in fs.glob(f"{path}/day=*")]
    except FileNotFoundError:
        return []
    days = []
    for day in sorted(name.removeprefix("day=") for name in names):
        if _a_date(day):
            days.append(day)
        elif skipped is not None:
            skipped.append(f"{day_folder(store_root, day)}: not named day=YYYY-MM-DD; its rows were not read")
    return days


def _a_date(text: str) -> bool:
    if not (len(text) == 10 and text.isascii()):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def default_spool_dir() -> Path:
    return Path(tempfile.gettempdir()) / "keel-request-log-spool"


def _process_start(pid: int) -> str | None:
    """When a running process started (clock ticks since boot, /proc); None when it is gone or a zombie,
    "" where /proc does not tell (a pid that exists is then taken as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # another user's process: it exists
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "" if not Path("/proc/self/stat").exists() else None
    return None if fields[0] == "Z" else fields[19]


def _wal_record(entry: Any) -> bytes:
    """One entry as one line of JSON (orjson: a few microseconds; a time as ISO 8601 text, read back by
    `_read_segment`). A value JSON cannot hold is kept as its text, as the log would keep it."""
    try:
        return orjson.dumps(entry, default=str, option=_WAL_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits, nesting deeper than orjson goes
        try:
            return (json.dumps(entry, default=str) + "\n").encode()
        except (RecursionError, TypeError, ValueError):
            return b"null\n"  # refused (and counted) if it is ever recovered, as the writer would refuse it


def _read_segment(path: Path) -> tuple[list[Any], int]:
    """A write-ahead segment's entries, and how many records in it were cut short (the kill came mid-write)."""
    entries, cut = [], 0
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:
                entry = json.loads(line)  # the fallback's NaN
            except ValueError:
                cut += 1
                continue
        if isinstance(entry, dict) and isinstance(entry.get("received_at"), str):
            with contextlib.suppress(ValueError):
                entry["received_at"] = dt.datetime.fromisoformat(entry["received_at"])
        entries.append(entry)
    return entries, cut


def _segment_number(name: str, process: str) -> int | None:
    prefix = f"{process}{WAL_SUFFIX}"
    number = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(number) if number.isascii() and number.isdigit() else None


class RowRefused(ValueError):
    """An entry that cannot be logged at all; the message is the reason it is counted under."""


def _as_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        try:
            return json.dumps(value, default=str)[:1000]
        except RecursionError:  # JSON may nest 1,024 deep, deeper than json.dumps goes
            return f"<a {type(value).__name__} nested too deep to log>"
    return token_key(value)


def _as_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None  # only rejected rows carry such values; their status says why


def _as_time(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise RowRefused("received_at is not a time")
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _as_int(value: Any, name: str, low: int, high: int, *, required: bool) -> int | None:
    if value is None and not required:
        return None
    number = _as_number(value)
    if number is None or not math.isfinite(number) or not number.is_integer() or not low <= number <= high:
        raise RowRefused(f"{name} is not an integer in {low}..{high}")
    return int(number)


class RequestLog:
    """Queues log entries and writes them from a background thread; `close` writes what is left."""

    def __init__(
        self,
        store_root: str,
        spec: DatasetSpec,
        *,
        flush_seconds: float = 2.0,
        flush_rows: int = 50_000,
        spool_dir: str | Path | None = None,
        spool_max_mb: float = 1024.0,
        max_pending_rows: int | None = None,
    ):
        self.store_root = store_root
        self.schema = log_schema(spec)
        self._inputs = input_columns(spec)
        self._numeric = set(spec.columns.numeric)
        self._flush_seconds, self._flush_rows = flush_seconds, flush_rows
        self._max_pending = max_pending_rows or max(10 * flush_rows, 100_000)
        # One spool per store, so two stores never trade rows through a shared spool folder.
        store_key = hashlib.sha256(store_root.encode()).hexdigest()[:12]
        self.spool = Path(spool_dir or default_spool_dir()) / store_key
        self._spool_max_bytes = int(spool_max_mb * 1024 * 1024)
        self._pending: list[dict[str, Any]] = []
        self._in_flight = 0  # entries a flush has taken and not yet written or queued again
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # the background thread and close() never write at once
        self._wake = threading.Event()
        self._closed = False
        # The start time and a random token: a restarted container often has the same pid.
        started = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        self._prefix = f"{socket.gethostname()}-{os.getpid()}-{started}-{uuid.uuid4().hex[:6]}"
        self.rows_logged = 0
        self.failed_flushes = 0
        self.rows_dropped: Counter[str] = Counter()
        self.errors: list[str] = []  # the latest write failures, for /metadata
        self._spooled: dict[Path, int] = self._spooled_files()
        self._retry_at, self._retry_delay = 0.0, 0.0
        self._status_written: dict[str, Any] | None = None
        self._started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._marker = self.spool / PROCESS_FOLDER / f"{self._prefix}.json"
        self._last_flush = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._pid_start = _process_start(os.getpid())
        # The write-ahead file: every queued entry is also in processes/<process>.wal-<segment> until its flush
        # has written it, so a killed process's rows are written by the next server of the spool.
        self._segment = 1  # the segment `append` writes to; the next one from each flush that takes entries
        self._wal: BinaryIO | None = None
        self.wal_errors = 0
        self.wal_failing: dict[str, str] | None = None  # since when and why the write-ahead file cannot be written
        self._wal_failed_at = 0.0  # when a write of it last failed (monotonic)
        self.store_failing: dict[str, str] | None = None  # since when and why the store takes no write
        self._spool_full = False  # the spool refused rows at its cap: they wait in memory only
        self.unclean_stops: list[dict[str, Any]] = []
        self._statuses_due = 0.0  # when the store's status files are next read for stops (at the start: now)
        self._find_unclean_stops()
        self._mark_running()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    # --- queueing --------------------------------------------------------------------------------

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Queue entries (the contract's columns and the row's input columns); never blocks on I/O.

        The request path only queues: each entry is put in the log's schema, alone, by the writer
        thread (`_coerce`), so a request never pays for it and no entry can fail another's write.
        """
        entries = list(entries)
        records = [_wal_record(entry) for entry in entries]  # outside the lock
        with self._lock:
            room = max(self._max_pending - len(self._pending), 0)
            dropped = len(entries) - room if len(entries) > room else 0
            self._pending.extend(entries[:room] if dropped else entries)
            self._wal_write(b"".join(records[:room] if dropped else records))
            if dropped:
                self.rows_dropped[QUEUE_FULL] += dropped
            full = len(self._pending) >= self._flush_rows
        if dropped:
            logger.error("request log: %d row(s) dropped: %s", dropped, QUEUE_FULL)
        if full or self.wal_failing:  # rows not safe from a kill are written at once
            self._wake.set()

    def _wal_path(self, segment: int, process: str | None = None) -> Path:
        return self.spool / PROCESS_FOLDER / f"{process or self._prefix}{WAL_SUFFIX}{segment:06d}"

    def _wal_write(self, data: bytes) -> None:
        """Add records to the current segment (called under `_lock`): one buffered write handed to the OS,
        no fsync, since the page cache outlives a killed process (not a crashed machine)."""
        if not data:
            return
        data = self._queued_if_wal_removed() or data
        try:
            if self._wal is None:
                path = self._wal_path(self._segment)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._wal = open(path, "ab")  # noqa: SIM115 - closed when the segment is rotated
            self._wal.write(data)
            self._wal.flush()
        except (OSError, ValueError) as error:  # the spool's disk: the rows are still queued, only not safe from a kill
            self.wal_errors += 1
            self._wal_failed_at = time.monotonic()
            if self.wal_failing is None:
                since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                self.wal_failing = {"since": since, "error": f"{type(error).__name__}: {error}"}
                self._mark_running(flushed=False)  # so a kill from now on is reported as possibly losing rows
            if self.wal_errors == 1 or self.wal_errors % 1000 == 0:
                logger.error("request log: could not write the write-ahead file (%d times): %s", self.wal_errors, error)
            return
        if self.wal_failing is not None and time.monotonic() - self._wal_failed_at >= WAL_RECOVERED_SECONDS:
            logger.warning(
                "request log: the write-ahead file is written again (it failed since %s)", self.wal_failing["since"]
            )
            self.wal_failing = None

    def _queued_if_wal_removed(self) -> bytes | None:
        """Every queued entry's record when the open segment was removed under the running server (a cleaner),
        for a new file, the marker written again; else None. Called under `_lock`, at every write (one fstat)
        and by the writer thread while it is idle, so no row waits in a segment without a name."""
        if self._wal is None or not self._wal_removed():
            return None
        logger.error(
            "request log: its write-ahead file was removed; %d queued row(s) written to a new one", len(self._pending)
        )
        self._wal = None
        self._mark_running(flushed=False)
        # The callers queue before they write, so a write's own entries are among them.
        return b"".join(_wal_record(entry) for entry in self._pending)

    def _wal_removed(self) -> bool:
        try:
            removed = os.fstat(self._wal.fileno()).st_nlink == 0
        except (OSError, ValueError):
            removed = True
        if removed:
            with contextlib.suppress(OSError, ValueError):
                self._wal.close()
        return removed

    def _rotate(self) -> int:
        """Start a new segment (called under `_lock` as the pending entries are taken); the number of the old one."""
        segment, self._segment = self._segment, self._segment + 1
        if self._wal is not None:
            with contextlib.suppress(OSError):
                self._wal.close()
            self._wal = None
        return segment

    def _coerce(self, entries: list[Any]) -> list[dict[str, Any]]:
        """The entries in the log's fixed schema; one that cannot be is refused alone, counted with why."""
        rows, refused = [], Counter()
        for entry in entries:
            try:
                rows.append(self._row(entry))
            except RowRefused as error:
                refused[f"refused: {error}"] += 1
            except Exception as error:  # an entry of a kind nobody foresaw: refused alone, never its flush
                refused[f"refused: {type(error).__name__}"] += 1
        if refused:
            with self._lock:
                self.rows_dropped.update(refused)
            for reason, count in refused.items():
                logger.warning("request log: %d row(s) dropped: %s", count, reason)
        return rows

    def _row(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The entry in the log's fixed schema: every value of its column's type, or RowRefused."""
        if not isinstance(entry, dict):
            raise RowRefused("the entry is not a mapping")
        row = {
            "request_id": _as_text(entry.get("request_id")),
            "received_at": _as_time(entry.get("received_at")),
            "arm": _as_text(entry.get("arm")),
            "model_version": _as_int(entry.get("model_version"), "model_version", 0, 2**62, required=False),
            "manifest_sha256": _as_text(entry.get("manifest_sha256")),
            "latency_ms": _as_number(entry.get("latency_ms")),
            "status": _as_int(entry.get("status"), "status", 0, 999, required=True),
            "score": _as_number(entry.get("score")),
            "served": bool(entry.get("served")),
        }
        for column in self._inputs:
            value = entry.get(column)
            row[column] = _as_number(value) if column in self._numeric else _as_text(value)
        return row

    # --- writing ---------------------------------------------------------------------------------

    def flush(self) -> list[str]:
        """Write every queued entry now (and what the spool holds); the files written to the store."""
        return self._flush(force=True)

    def _flush(self, force: bool) -> list[str]:
        with self._write_lock:
            written = self._drain_all_spooled(force)
            with self._lock:
                entries, self._pending = self._pending, []
                segment = self._rotate() if entries else 0
                self._in_flight = len(entries)  # still waiting, for status(), until they are written or queued again
            # The files are named after the segment, so a flush that reached the store before a kill is
            # recognised by the server that recovers the segment (`_recover`), never written twice.
            name = f"{self._prefix}-{segment:06d}.parquet"
            for day, rows in _by_day(self._coerce(entries)):
                uri = self._save(day, rows, name)
                with self._lock:  # written, spooled or queued again: counted there now
                    self._in_flight = max(self._in_flight - len(rows), 0)
                if uri:
                    written.append(uri)
            with self._lock:
                self._in_flight = 0
            if segment:  # its rows are in the store, the spool, or queued again in the current segment
                with contextlib.suppress(OSError):
                    self._wal_path(segment).unlink(missing_ok=True)
            self._write_status()
            return written

    def _table(self, rows: list[dict[str, Any]]) -> pa.Table:
        try:
            columns = {f.name: pa.array([row[f.name] for row in rows], type=f.type) for f in self.schema}
            return pa.Table.from_pydict(columns, schema=self.schema)
        except (pa.ArrowException, TypeError, ValueError, OverflowError, KeyError):
            # Rows are coerced when queued, so this is a last guard: keep every row that converts.
            good = []
            for row in rows:
                try:
                    pa.Table.from_pylist([row], schema=self.schema)
                    good.append(row)
                except (pa.ArrowException, TypeError, ValueError, OverflowError) as error:
                    self.rows_dropped[f"refused: {type(error).__name__}"] += 1
            return pa.Table.from_pylist(good, schema=self.schema)

    def _save(self, day: str, rows: list[dict[str, Any]], name: str) -> str | None:
        """Write a day's rows to the store as `name`; on failure spool them (or queue them again). The store URI."""
        table = self._table(rows)
        if table.num_rows == 0:
            return None
        uri = f"{day_folder(self.store_root, day)}/{name}"
        try:
            with io.atomic_output(uri) as tmp:
                pq.write_table(table, tmp)
            self.rows_logged += table.num_rows
            self._store_writes()
            return uri
        except Exception as error:
            self._failed(f"writing {table.num_rows} rows of {day}", error)
        self._spool_full = self._spool_bytes() >= self._spool_max_bytes
        if not self._spool_full:
            target = self.spool / f"day={day}" / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with io.atomic_output(str(target)) as tmp:
                    pq.write_table(table, tmp)
                self._spooled[target] = table.num_rows
                return None
            except Exception as error:
                logger.error("request log: could not spool %d rows to %s: %s", table.num_rows, self.spool, error)
        # Neither the store nor the spool took them: back to the queue, which is bounded by append.
        back = table.to_pylist()
        records = [_wal_record(row) for row in back]  # encoded before the lock, which the request path waits on
        with self._lock:
            room = max(self._max_pending - len(self._pending), 0)
            kept = back[:room]
            self._pending[:0] = kept
            self._wal_write(b"".join(records[:room]))  # into the current segment: theirs is deleted after the flush
            if table.num_rows > len(kept):
                self.rows_dropped[QUEUE_FULL] += table.num_rows - len(kept)
                logger.error("request log: %d row(s) dropped: %s", table.num_rows - len(kept), QUEUE_FULL)
        return None

    def _failed(self, what: str, error: Exception) -> None:
        self.failed_flushes += 1
        if self.store_failing is None:
            since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            self.store_failing = {"since": since, "error": f"{what}: {type(error).__name__}: {error}"[:300]}
        message = f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {what}: {type(error).__name__}: {error}"
        self.errors = [*self.errors[-9:], message]
        logger.error("request log: %s (kept in the spool %s, retried)", message, self.spool)

    def _store_writes(self) -> None:
        """A write reached the store: an outage is over."""
        if self.store_failing is not None:
            logger.warning(
                "request log: the store takes writes again (they failed since %s)", self.store_failing["since"]
            )
            self.store_failing = None

    def _spooled_files(self, known: Mapping[Path, int] | None = None) -> dict[Path, int]:
        """The spool's files not in `known` (a restarted server's, a neighbour's spooled since) with their row counts."""
        files = {}
        try:
            paths = sorted(self.spool.glob("day=*/*.parquet")) if self.spool.exists() else []
        except OSError as error:  # looked at again at the next flush
            logger.warning("request log: could not list the spool %s: %s", self.spool, error)
            return files
        for path in paths:
            if known and path in known:
                continue
            try:
                files[path] = pq.ParquetFile(path).metadata.num_rows
            except FileNotFoundError:  # written meanwhile by the server that spooled it
                continue
            except Exception as error:  # a spool file cut short by a crash: kept aside, named, never read again
                logger.error("request log: spool file %s is unreadable (%s); moved to .unreadable", path, error)
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".unreadable"))
        return files

    def _drain_all_spooled(self, force: bool) -> list[str]:
        # Files other servers of this spool left since this one started (a rolling restart): written here too.
        self._spooled.update(self._spooled_files(known=self._spooled))
        return self._drain_spool(force=force)

    def _spool_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._spooled if p.exists())

    def _drain_spool(self, force: bool = False) -> list[str]:
        """Write spooled files to the store, oldest first; stop at the first failure (the store is down)."""
        if not self._spooled or (not force and time.monotonic() < self._retry_at):
            return []
        written = []
        for path in sorted(self._spooled):
            if self._set_aside(path):
                continue
            day = path.parent.name.removeprefix("day=")
            uri = f"{day_folder(self.store_root, day)}/{path.name}"
            try:
                with io.atomic_output(uri) as tmp:
                    shutil.copyfile(path, tmp)
            except Exception as error:
                if not path.exists() and self._set_aside(path):  # another server of this store took it meanwhile
                    continue
                self._failed(f"retrying the spooled {path.name}", error)
                self._retry_delay = min(max(2 * self._retry_delay, self._flush_seconds), RETRY_MAX_SECONDS)
                self._retry_at = time.monotonic() + self._retry_delay
                return written
            self.rows_logged += self._spooled.pop(path)
            path.unlink(missing_ok=True)
            written.append(uri)
            self._store_writes()
            self._spool_full = False
        self._retry_delay = 0.0
        return written

    def _set_aside(self, path: Path) -> bool:
        """True when a spooled file is gone or no longer the Parquet file it was (removed by hand, cut short):
        its rows are counted as dropped with the reason and it is never copied to the store, so one lost
        file neither holds up the files after it nor puts a broken file in the log."""
        if not path.exists():
            day = path.parent.name.removeprefix("day=")
            if io.exists(f"{day_folder(self.store_root, day)}/{path.name}"):
                # Another server of this store (a rolling restart shares the spool) wrote it: logged, not lost.
                self._spooled.pop(path)
                return True
            reason = "spool file vanished before it was written"
        else:
            try:
                if pq.read_table(path).num_rows == self._spooled[path]:
                    return False
            except Exception:  # noqa: BLE001, S110 - any failure to read it back means it is not the file written
                pass
            reason = "spool file unreadable (set aside as .unreadable)"
            with contextlib.suppress(OSError):
                path.rename(path.with_suffix(".unreadable"))
        rows = self._spooled.pop(path)
        with self._lock:
            self.rows_dropped[reason] += rows
        logger.error("request log: %d row(s) dropped: %s (%s)", rows, reason, path)
        return True

    # --- reporting -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What /metadata shows: rows written, waiting (queued or spooled), failed writes, drops by reason."""
        with self._lock:
            queued = len(self._pending) + self._in_flight
        return {
            "process": self._prefix,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": self._pid_start,
            "started": self._started_at,
            "rows_logged": self.rows_logged,
            "rows_pending": queued + sum(self._spooled.values()),
            "rows_spooled": sum(self._spooled.values()),
            "spool": str(self.spool),
            "failed_flushes": self.failed_flushes,
            "rows_dropped": sum(self.rows_dropped.values()),
            "rows_dropped_by_reason": dict(self.rows_dropped),
            "last_errors": self.errors[-3:],
            "unclean_stops": len(self.unclean_stops),
            "rows_recovered": sum(stop.get("rows_recovered", 0) for stop in self.unclean_stops),
            "wal_errors": self.wal_errors,
            "wal_failing": self.wal_failing,
            "store_failing": self.store_failing,
            "spool_full": self._spool_full,
            "unclean_stop_details": self.unclean_stops[-5:],
        }

    def _write_status(self) -> None:
        """The counts in the store for the alert sensor, once something went wrong and when they change."""
        status = self.status()
        if not (status["failed_flushes"] or status["rows_dropped"] or status["unclean_stops"] or status["wal_errors"]):
            return
        counts = {
            k: status[k] for k in ("failed_flushes", "rows_dropped", "rows_pending", "unclean_stops", "wal_failing")
        }
        if counts == self._status_written:
            return
        uri = serving_uri(self.store_root, STATUS_FOLDER, f"{self._prefix}.json")
        try:
            with io.atomic_output(uri) as tmp:
                tmp.write_text(json.dumps({**status, "written_at": dt.datetime.now(dt.UTC).isoformat()}))
            self._status_written = counts
        except Exception as error:  # the store is down: the next flush tries again
            logger.warning("request log: could not write its status to %s: %s", uri, error)

    def _run(self) -> None:
        next_flush = time.monotonic() + self._flush_seconds
        next_look = time.monotonic() + LOOK_AROUND_SECONDS
        while not self._closed:
            woken = self._wake.wait(min(self._flush_seconds, LOOK_AROUND_SECONDS, WAL_CHECK_SECONDS))
            self._wake.clear()
            try:
                now = time.monotonic()
                if woken or now >= next_flush:
                    self._flush(force=False)
                    next_flush = time.monotonic() + self._flush_seconds
                    if not self._closed:
                        self._mark_running()
                elif now >= next_look:  # between long flushes: the spool (neighbours' files too) and stopped neighbours
                    with self._write_lock:
                        self._drain_all_spooled(force=False)
                        self._write_status()
                else:  # idle: no request writes the segment, so its name is looked at here
                    with self._lock:
                        self._wal_write(self._queued_if_wal_removed() or b"")
                    continue
                next_look = time.monotonic() + LOOK_AROUND_SECONDS
                self._find_unclean_stops()
            except Exception as error:  # never stop the writer thread; the error is reported
                self._failed("flushing", error)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
        with self._lock:
            left = len(self._pending)  # neither the store nor the spool took them: in the current segment
            self._rotate()
        if not left and not self._own_segments():
            self._marker.unlink(missing_ok=True)  # a clean stop: nothing was left unwritten in memory
        else:  # the next server of the spool writes them from the segments and reports the stop
            logger.error("request log: %d row(s) left unwritten at the stop, kept in %s", left, self.spool)

    def _own_segments(self) -> list[Path]:
        folder = self.spool / PROCESS_FOLDER
        try:
            return [p for p in folder.iterdir() if _segment_number(p.name, self._prefix) is not None]
        except OSError:
            return []

    # --- a process stopped without its final flush ------------------------------------------------

    def _mark_running(self, flushed: bool = True) -> None:
        """This process's marker in the spool, with the time of its last flush (its rows before it are written)."""
        if flushed:
            self._last_flush = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        marker = {
            "process": self._prefix,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": self._pid_start,
            "started": self._started_at,
            "last_flush": self._last_flush,
            "flush_seconds": self._flush_seconds,
            "flush_rows": self._flush_rows,
            "write_ahead": True,  # its unwritten rows are in its segments (older servers had none)
            "wal_errors": self.wal_errors,
            "wal_failing_since": (self.wal_failing or {}).get("since"),
        }
        data = json.dumps(marker).encode()
        tmp = self._marker.with_name(f".{self._marker.name}.tmp")
        try:  # replaced in one step; no fsync: it must outlive the process, not the machine
            self._marker.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, self._marker)
            return
        except OSError as error:  # the spool's disk: the next flush tries again
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            logger.warning("request log: could not write its process marker %s: %s", self._marker, error)
        try:  # a full disk: the marker's own block still takes it, written in place (padded, parsed by its JSON)
            with open(self._marker, "r+b") as handle:
                size = len(handle.read())
                handle.seek(0)
                handle.write(data.ljust(size, b" "))
        except OSError:
            pass

    def _stopped(self, marker: dict[str, Any]) -> bool:
        if marker.get("host") != socket.gethostname():  # no pid to look at: gone once it stopped flushing
            silent = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(marker["last_flush"])).total_seconds()
            return silent > max(UNCLEAN_STOP_STALE_SECONDS, 3 * float(marker.get("flush_seconds") or 0))
        start = _process_start(int(marker["pid"]))  # its pid gone, or another process's now
        return start is None or bool(start and marker.get("pid_start") and start != marker["pid_start"])

    def _find_unclean_stops(self) -> None:
        """Count every other process of this spool that stopped without its final flush (its marker stayed)."""
        folder = self.spool / PROCESS_FOLDER
        try:
            paths = sorted(folder.glob("*.json")) if folder.exists() else []
        except OSError as error:  # the spool unreadable: looked at again at the next flush
            logger.warning("request log: could not look for stopped processes in %s: %s", folder, error)
            return
        for path in paths:
            if path == self._marker:
                continue
            try:
                marker = json.loads(path.read_text())
                if not self._stopped(marker):
                    continue
            except FileNotFoundError:  # stopped cleanly meanwhile, or taken by another server
                continue
            except (OSError, ValueError, KeyError, TypeError) as error:
                marker = {"process": path.stem, "unreadable": f"{type(error).__name__}: {error}"}
            taken = path.with_name(f"{path.name}.taken-by-{self._prefix}")
            try:
                path.rename(taken)  # one server takes it: reported once
            except OSError:
                continue
            taken.unlink(missing_ok=True)
            path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)
            stop = {**marker, **self._recover(path.stem)}
            self._found(stop)
            _forget_status(self.store_root, path.stem)  # its last counts: this stop's report replaces them
        self._recover_orphans(folder)
        self._find_stops_while_failing()

    def _found(self, stop: dict[str, Any]) -> None:
        """A process found stopped without its final flush: counted, shown on /health and logged, once."""
        stop["found_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.unclean_stops.append(stop)
        logger.error("request log: %s", unclean_stop_text(stop))

    def _find_stops_while_failing(self) -> None:
        """A process of this host killed while its write-ahead file failed left no marker that could say so (or
        none at all); the status it wrote when the failure began does. Reported once: its status file goes.
        The store's status files are read at most every LOOK_AROUND_SECONDS, not at every flush."""
        if time.monotonic() < self._statuses_due:
            return
        self._statuses_due = time.monotonic() + LOOK_AROUND_SECONDS
        for status in read_status(self.store_root):
            process = status.get("process")
            if not status.get("wal_failing") or process == self._prefix or status.get("host") != socket.gethostname():
                continue
            if not self._stopped({**status, "last_flush": status.get("written_at")}):
                continue
            if not _forget_status(self.store_root, process):  # one server takes it: reported once
                continue
            stop = {**status, "while_wal_failing": True, "wal_failing_since": status["wal_failing"].get("since")}
            stop = {
                k: stop[k]
                for k in ("process", "host", "pid", "started", "wal_errors", "wal_failing_since", "while_wal_failing")
                if k in stop
            }
            self._found(stop)

    def _recover_orphans(self, folder: Path) -> None:
        """Segments of a process without a marker, untouched for UNCLEAN_STOP_STALE_SECONDS: the server that took
        its marker was stopped itself before it had written them. Written as `_recover` does; a second server
        doing so at the same time writes the same file names, so no row is written twice."""
        try:
            paths = list(folder.iterdir()) if folder.exists() else []
        except OSError:
            return
        names, now, processes = {p.name for p in paths}, time.time(), set()
        for path in paths:
            process = path.name.rsplit(WAL_SUFFIX, 1)[0]
            if WAL_SUFFIX not in path.name or process == self._prefix or f"{process}.json" in names:
                continue
            try:
                if now - path.stat().st_mtime > UNCLEAN_STOP_STALE_SECONDS:
                    processes.add(process)
            except OSError:  # written meanwhile by another server
                continue
        for process in sorted(processes):
            stop = {"process": process, "orphaned": True, **self._recover(process)}
            self._found(stop)

    def _recover(self, process: str) -> dict[str, int]:
        """Write the rows of a stopped process's segments (it was killed before their flush ended) and delete
        them. A segment's files carry the names its own flush would have given them, so rows that flush had
        already put in the store (or the spool) are recognised and not written twice; a record cut short by
        the kill is counted as lost."""
        folder = self.spool / PROCESS_FOLDER
        counts = {"rows_recovered": 0, "rows_already_logged": 0, "rows_lost": 0}
        try:
            found = [(_segment_number(p.name, process), p) for p in folder.iterdir()]
        except OSError as error:
            logger.error("request log: could not look for the write-ahead files of %s: %s", process, error)
            return counts
        with self._write_lock:
            for segment, path in sorted((n, p) for n, p in found if n is not None):
                try:
                    entries, cut = _read_segment(path)
                except OSError as error:
                    logger.error("request log: could not read the write-ahead file %s: %s", path, error)
                    continue
                counts["rows_lost"] += cut
                name = f"{process}-{segment:06d}.parquet"
                for day, rows in _by_day(self._coerce(entries)):
                    if (self.spool / f"day={day}" / name).exists() or io.exists(
                        f"{day_folder(self.store_root, day)}/{name}"
                    ):
                        counts["rows_already_logged"] += len(rows)
                        continue
                    if self._save(day, rows, name) is None:  # not the store: the spool, else this process's queue
                        counts["rows_waiting"] = counts.get("rows_waiting", 0) + len(rows)
                    counts["rows_recovered"] += len(rows)
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        if any(counts.values()):
            logger.warning("request log: from the write-ahead file of %s: %s", process, counts)
        return counts

    def problems(self) -> list[dict[str, str]]:
        """For /health: a write-ahead file that cannot be written, and the processes found stopped without their
        final flush in the last UNCLEAN_STOP_SHOWN_SECONDS."""
        now = dt.datetime.now(dt.UTC)
        failing, store = self.wal_failing, self.store_failing
        return [
            *(
                [{"kind": "request_log", "reason": wal_failing_text(self.spool, failing), "since": failing["since"]}]
                if failing
                else []
            ),
            *(
                {"kind": "request_log", "reason": unclean_stop_text(stop), "since": stop["found_at"]}
                for stop in self.unclean_stops
                if (now - dt.datetime.fromisoformat(stop["found_at"])).total_seconds() <= UNCLEAN_STOP_SHOWN_SECONDS
            ),
            # The status files the alert sensor reads live in the store too: while it is down, this is where it shows.
            *(
                [{"kind": "request_log", "reason": self._store_failing_text(store), "since": store["since"]}]
                if store
                else []
            ),
        ]

    def _store_failing_text(self, store: dict[str, str]) -> str:
        status = self.status()
        spooled, memory = status["rows_spooled"], status["rows_pending"] - status["rows_spooled"]
        text = (
            f"the request log cannot write to the store {self.store_root} since {store['since']} ({store['error']}); "
            f"{spooled} row(s) wait in the spool {self.spool} and {memory} in memory, retried"
        )
        if self._spool_full:
            text += (
                f"; the spool is at its cap (serving.log_spool_max_mb {self._spool_max_bytes / 2**20:g}): further rows "
                f"wait in memory, and beyond {self._max_pending} queued rows they are dropped"
            )
        return text


def wal_failing_text(spool: Path | str, failing: dict[str, str]) -> str:
    return (
        f"the request log cannot write its write-ahead file in {spool}/{PROCESS_FOLDER} since {failing['since']} "
        f"({failing['error']}): the rows it answers are written at once, but those not yet written would be lost "
        "if this server were killed"
    )


def _by_day(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    by_day: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_day.setdefault(row["received_at"].date().isoformat(), []).append(row)
    return sorted(by_day.items())


def _recovery_text(stop: dict[str, Any]) -> str:
    text = f"{stop['rows_recovered']} row(s) it had not written were recovered from its write-ahead file and "
    waiting = stop.get("rows_waiting", 0)
    text += (
        f"wait to be written to the request log ({waiting} in the spool: the store did not take them yet)"
        if waiting
        else "written to the request log"
    )
    if stop.get("rows_already_logged"):
        text += f" ({stop['rows_already_logged']} more were already logged)"
    lost = stop.get("rows_lost", 0)
    if lost:
        text += f"; {lost} row(s) were lost (a record cut short by the kill)"
    if stop.get("wal_errors"):
        since = f" from {stop['wal_failing_since']}" if stop.get("wal_failing_since") else ""
        text += (
            f"; but its write-ahead file failed {stop['wal_errors']} time(s){since}, so rows it answered "
            "that were not yet written may be missing"
        )
    elif not lost:
        text += "; none lost"
    return text


def unclean_stop_text(stop: dict[str, Any]) -> str:
    """What a person reads: which process, when it started, roughly when it stopped, what may be missing."""
    if stop.get("while_wal_failing"):
        return (
            f"serving process {stop['process']} (pid {stop.get('pid')} on {stop.get('host')}, started "
            f"{stop.get('started')}) stopped without its final flush while its write-ahead file failed (since "
            f"{stop.get('wal_failing_since')}): the rows it answered that were not yet written (those of its last "
            "moments) may be missing from the request log"
        )
    if stop.get("orphaned"):
        return (
            f"serving process {stop['process']} stopped without its final flush, and the server that found it "
            f"stopped before it had written its write-ahead file: {_recovery_text(stop)}"
        )
    if "unreadable" in stop:
        what = (
            _recovery_text(stop)
            if stop.get("rows_recovered")
            else "rows it answered last may be missing from the request log"
        )
        return (
            f"serving process {stop['process']} stopped without its final flush (its marker is unreadable: "
            f"{stop['unreadable']}); {what}"
        )
    if stop.get("write_ahead") or stop.get("rows_recovered"):
        return (
            f"serving process {stop['process']} (pid {stop['pid']} on {stop['host']}, started {stop['started']}) "
            f"stopped without its final flush, after its last flush at {stop['last_flush']}: {_recovery_text(stop)}"
        )
    return (
        f"serving process {stop['process']} (pid {stop['pid']} on {stop['host']}, started {stop['started']}) "
        f"stopped without its final flush, after its last flush at {stop['last_flush']}: up to "
        f"{stop['flush_rows']} row(s) it answered within its last {stop['flush_seconds']:g} s may be missing "
        "from the request log"
    )


def _forget_status(store_root: str, process: str) -> bool:
    """Remove a stopped process's status file; False when it was not there (another server took it)."""
    fs, path = fsspec.core.url_to_fs(serving_uri(store_root, STATUS_FOLDER, f"{process}.json"))
    try:
        fs.rm(path)
    except (FileNotFoundError, OSError):
        return False
    return True


def read_status(store_root: str) -> list[dict[str, Any]]:
    """The status every serving process wrote once its request log failed, dropped rows or found an unclean stop."""
    fs, path = fsspec.core.url_to_fs(serving_uri(store_root, STATUS_FOLDER))
    if fs.isfile(path):  # not "no status": the folder is unreadable, and the sensor's tick fails naming it
        raise NotADirectoryError(f"the request log's status folder {path} is a file")
    statuses = []
    for file in sorted(fs.glob(f"{path}/*.json")):
        try:
            with fs.open(file, "rb") as handle:
                statuses.append(json.loads(handle.read()))
        except (OSError, ValueError) as error:
            logger.warning("request log status %s is unreadable: %s", file, error)
    return statuses


def _read_file(fs, file: str) -> pa.Table:
    with fs.open(file, "rb") as handle:
        table = pq.read_table(handle)
    fields = []
    for field in BASE_SCHEMA:
        if field.name not in table.column_names:
            raise ValueError(f"it has no column {field.name!r}")
        fields.append(field)
    # The contract's columns in the contract's types (a foreign file with other types fails here).
    for field in fields:
        i = table.column_names.index(field.name)
        if table.schema.field(i).type != field.type:
            table = table.set_column(i, field, table.column(i).cast(field.type))
    return table


def _requests_of(table: pa.Table) -> str:
    """A digest of which requests a log file holds: their ids, times and arms, in order."""
    digest = hashlib.sha256()
    for name in ("request_id", "received_at", "arm"):
        digest.update(pd.util.hash_pandas_object(table.column(name).to_pandas(), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def read_day(store_root: str, day: str | dt.date, skipped: list[str] | None = None) -> pd.DataFrame:
    """Every logged row of the day (all files, all processes); empty with no file.

    A file that is not a request-log Parquet file (unreadable, or without the log's columns in its
    types) is left out, named in `skipped` (`<file>: <why>`) and in a warning, so one stray file
    never hides the rest of the day.
    """
    folder = day_folder(store_root, day)
    fs, path = fsspec.core.url_to_fs(folder)
    files = sorted(p for p in fs.glob(f"{path}/*") if not p.rsplit("/", 1)[-1].startswith("."))
    tables, seen = [], {}
    for file in files:
        try:
            kind = fs.info(file).get("type")
            if kind != "file":  # a FIFO or a device would be read without end and hold up every reader
                raise ValueError("it is a folder" if kind == "directory" else f"it is not a regular file ({kind})")
            table = _read_file(fs, file)
            # A copy of a log file kept beside it (`cp part.parquet part-backup.parquet`) holds the same
            # requests, received at the same instants: read, each would count twice.
            key = _requests_of(table)
            if key in seen:
                problem = f"{file}: holds the same requests as {seen[key]} (a copy?); they were read once"
                logger.warning("request log: skipped %s", problem)
                if skipped is not None:
                    skipped.append(problem)
                continue
            seen[key] = file.rsplit("/", 1)[-1]
            tables.append(table)
        except Exception as error:
            problem = f"{file}: not a request-log Parquet file ({type(error).__name__}: {error})"[:500]
            logger.warning("request log: skipped %s", problem)
            if skipped is not None:
                skipped.append(problem)
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in BASE_SCHEMA.names})
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()
