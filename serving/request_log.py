"""The endpoint's request log: one row per request row and arm, as Parquet files per day.

    <artifact store root>/serving/requests/day=YYYY-MM-DD/<host>-<pid>-<seq>.parquet

Columns: request_id, received_at (UTC), arm (champion | canary | shadow), model_version,
manifest_sha256, latency_ms (validation + features + prediction for that arm), status (HTTP),
score (null on error), served (this arm's score was returned; false for the shadow), then the
dataset spec's input columns (every spec column but the target): numeric as float64, everything
else as text (booleans as their token, e.g. "1"), so the logged rows score again as they came.

`RequestLog.append` only queues entries; a background thread writes them every `flush_seconds` or
`flush_rows` entries, each file all-or-nothing (ml.io.atomic_output), so a request never waits on
the disk and a reader never sees a partial file. `read_day` reads every file of a day.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Iterable
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml import io
from ml.spec import DatasetSpec, token_key
from serving.state import serving_uri

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


def input_columns(spec: DatasetSpec) -> list[str]:
    """The raw columns a request row carries and the log keeps: the spec's columns without the target."""
    return spec.expected_columns(include_target=False)


def log_schema(spec: DatasetSpec) -> pa.Schema:
    numeric = set(spec.columns.numeric)
    fields = [pa.field(c, pa.float64() if c in numeric else pa.string()) for c in input_columns(spec)]
    return pa.schema([*BASE_SCHEMA, *fields])


def day_folder(store_root: str, day: str | dt.date) -> str:
    return serving_uri(store_root, "requests", f"day={day}")


def _as_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value if isinstance(value, str) else token_key(value)


def _as_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # only rejected rows carry such values; their status says why


class RequestLog:
    """Queues log entries and writes them from a background thread; `close` writes what is left."""

    def __init__(self, store_root: str, spec: DatasetSpec, *, flush_seconds: float = 2.0, flush_rows: int = 50_000):
        self.store_root = store_root
        self.schema = log_schema(spec)
        self._numeric = set(spec.columns.numeric)
        self._flush_seconds, self._flush_rows = flush_seconds, flush_rows
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._seq = 0
        self._prefix = f"{socket.gethostname()}-{os.getpid()}"
        self.errors: list[str] = []  # write failures, kept for /metadata rather than failing requests
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Queue entries (the contract's columns and the row's input columns); never blocks on I/O."""
        with self._lock:
            self._pending.extend(entries)
            full = len(self._pending) >= self._flush_rows
        if full:
            self._wake.set()

    def flush(self) -> list[str]:
        """Write every queued entry now; the files written."""
        with self._lock:
            entries, self._pending = self._pending, []
        if not entries:
            return []
        by_day: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_day.setdefault(entry["received_at"].astimezone(dt.UTC).date().isoformat(), []).append(entry)
        return [self._write(day, rows) for day, rows in sorted(by_day.items())]

    def _table(self, rows: list[dict[str, Any]]) -> pa.Table:
        columns = {}
        for field in self.schema:
            values = [row.get(field.name) for row in rows]
            if field.name in self._numeric:
                values = [_as_number(v) for v in values]
            elif field.type == pa.string() and field.name not in BASE_SCHEMA.names:
                values = [_as_text(v) for v in values]
            columns[field.name] = pa.array(values, type=field.type)
        return pa.Table.from_pydict(columns, schema=self.schema)

    def _write(self, day: str, rows: list[dict[str, Any]]) -> str:
        self._seq += 1
        uri = f"{day_folder(self.store_root, day)}/{self._prefix}-{self._seq:06d}.parquet"
        with io.atomic_output(uri) as tmp:
            pq.write_table(self._table(rows), tmp)
        return uri

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception as error:  # a full disk must not stop serving; the error is reported
                self.errors.append(f"{type(error).__name__}: {error}")

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


def read_day(store_root: str, day: str | dt.date) -> pd.DataFrame:
    """Every logged row of the day (all files, all processes); empty with no file."""
    folder = day_folder(store_root, day)
    fs, path = fsspec.core.url_to_fs(folder)
    files = sorted(p for p in fs.glob(f"{path}/*.parquet") if not p.rsplit("/", 1)[-1].startswith("."))
    if not files:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in BASE_SCHEMA.names})
    tables = []
    for file in files:
        with fs.open(file, "rb") as handle:
            tables.append(pq.read_table(handle))
    return pa.concat_tables(tables, promote_options="default").to_pandas()
