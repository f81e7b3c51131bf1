"""Daily files that arrived, each with a cheap version, and whether that version was already taken in.

The arrival sensors and the nightly schedule share this: a day's file is keyed by its version, so a
corrected or re-delivered file runs again, while a file that already ran (or failed, or is running)
is skipped with a reason. The version is read from the listing, never from the bytes: an object
store's ETag / MD5 (s3, gcs, azure), or size + modification time for a local file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass

import dagster as dg
import fsspec

DATE = r"(\d{4}-\d{2}-\d{2})"
RUN_KEY_TAG = "dagster/run_key"
# A local day's file that does not end as a Parquet file does (its footer's magic bytes) and changed this recently
# is still being written (copied in chunks, an upload in progress): it is taken in once complete, or once it has
# not changed for this long, so a file that stays broken still gets its run, which fails naming it.
WRITING_GRACE_SECONDS = 600.0
PARQUET_MAGIC = b"PAR1"
# Tags a run that took in a file carries, so the UI and the sensors can tell which file version it read.
FILE_TAG, VERSION_TAG = "keel/file", "keel/file_version"


@dataclass(frozen=True)
class Arrival:
    """One day's file as the listing shows it."""

    day: str
    uri: str
    version: str  # short hash of the listing's content tag or size + mtime
    modified: float | None  # POSIX time of the last write, when the file system says

    def run_key(self, prefix: str) -> str:
        return f"{prefix}-{self.day}-{self.version}"

    def tags(self) -> dict[str, str]:
        return {FILE_TAG: self.uri[-200:], VERSION_TAG: self.version}


def _version(info: dict) -> str:
    # Object stores give a content tag that changes with every upload; a local file has size + mtime.
    tag = next((info[k] for k in ("ETag", "etag", "md5Hash") if info.get(k)), None)
    raw = str(tag).strip('"') if tag else f"{info.get('size')}-{_modified(info)}"
    return hashlib.md5(raw.encode()).hexdigest()[:12]


def _modified(info: dict) -> float | None:
    keys = ("mtime", "LastModified", "last_modified", "updated", "created")  # local, s3, azure, gcs, memory
    value = next((info[k] for k in keys if info.get(k)), None)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value) if value is not None else None


def _invalid_date(day: str) -> str | None:
    try:
        dt.date.fromisoformat(day)
    except ValueError as error:
        return str(error)
    return None


def arrived(template: str, misnamed: list[str] | None = None) -> list[Arrival]:
    """The files matching a `{date}` template (a path or any fsspec URI), by day.

    A file whose name has the date's shape but no real date (`2026-13-45`), a file the template's wildcard
    finds whose name is not the template's (`2026-10-6.parquet`, `2026-10-22(1).parquet`), a folder under
    a day's file name, or a symbolic link to nothing, is no day's file: it is left out and named in
    `misnamed`, so a sensor says so rather than wait for that day forever. A symbolic link to a file is
    that file.
    """
    fs, pattern = fsspec.core.url_to_fs(template.replace("{date}", "*"))
    day_of = re.compile(re.escape(fs._strip_protocol(template)).replace(re.escape("{date}"), DATE) + "$")
    prefix = template[: len(template) - len(fs._strip_protocol(template))] if "://" in template else ""
    found = []
    listed = fs.glob(pattern, detail=True)
    if misnamed is not None:
        misnamed += _outside_the_wildcard(fs, pattern, set(listed), prefix, template)
    for path, info in listed.items():
        match = day_of.match(fs._strip_protocol(path))
        where = prefix + fs._strip_protocol(path)
        if not match:  # e.g. `2026-10-6.parquet`, `2026-10-22(1).parquet`: a delivery nobody would score
            if misnamed is not None and not where.rsplit("/", 1)[-1].startswith("."):  # hidden: a temporary file
                misnamed.append(
                    f"{where}: not named as {template.rsplit('/', 1)[-1]!r} with a YYYY-MM-DD date; rename it to be taken in"
                )
            continue
        if info.get("islink"):  # the listing describes the link; a run reads what it points to
            try:
                info = fs.info(path)
            except OSError as error:
                if misnamed is not None:
                    misnamed.append(f"{where}: a symbolic link to nothing readable ({error.strerror or error})")
                continue
        if info.get("type", "file") != "file":  # e.g. Spark's folder of part files under the day's name
            if misnamed is not None:
                kind = "a folder" if info.get("type") == "directory" else "a FIFO, device or socket"
                misnamed.append(f"{where}: {kind}, not a file; a day's data is one file (write it as one)")
            continue
        if (problem := _invalid_date(match.group(1))) is not None:
            if misnamed is not None:
                misnamed.append(f"{where}: no valid date in its name ({problem})")
            continue
        found.append(Arrival(match.group(1), where, _version(info), _modified(info)))
    return sorted(found, key=lambda a: a.day)


def _outside_the_wildcard(fs, pattern: str, listed: set[str], prefix: str, template: str) -> list[str]:
    """Files beside the day's files, with a date in their name, that the template's wildcard does not
    find (`2026-10-02.PARQUET`, `2026-10-02.parquet.csv`, a trailing space): a delivery nobody would score."""
    folder = pattern.rsplit("/", 1)[0] if "/" in pattern else "."
    try:
        beside = fs.glob(f"{folder}/*")
    except (OSError, ValueError):
        return []
    named = []
    for path in sorted(set(beside) - listed):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith(".") and re.search(r"\d{4}-\d{2}-\d{2}", name):
            named.append(
                f"{prefix + fs._strip_protocol(path)}: not named as {template.rsplit('/', 1)[-1]!r} "
                "with a YYYY-MM-DD date; rename it to be taken in"
            )
    return named


def one(uri: str, day: str) -> Arrival | None:
    """The day's file at `uri`, or None when it has not arrived."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    return Arrival(day, uri, _version(info), _modified(info))


def _latest_materialized(instance: dg.DagsterInstance, key: dg.AssetKey, days: list[str], since: float) -> dict:
    """Day -> timestamp of its latest materialization after `since`, in one paged query."""
    latest: dict[str, float] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=days, after_timestamp=since),
            limit=1000,
            cursor=cursor,
        )
        for record in result.records:
            latest.setdefault(record.partition_key, record.timestamp)
        if not result.has_more:
            return latest
        cursor = result.cursor


def not_taken_in(
    instance: dg.DagsterInstance, arrivals: list[Arrival], prefix: str, asset: dg.AssetKey
) -> tuple[list[Arrival], list[str]]:
    """(arrivals to run, why the others are skipped).

    An arrival is taken in when a run keyed by its version exists (whatever its outcome: a failed file
    runs again once it is corrected, and transient failures are Dagster's run retries' job), or when
    `asset` was materialized for the day after the file was last written (a backfill or a run by hand).
    """
    if not arrivals:
        return [], []
    keys = {a.run_key(prefix): a for a in arrivals}
    runs: dict[str, dg.DagsterRun] = {}
    for run in instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: list(keys)})):  # newest first
        runs.setdefault(run.tags[RUN_KEY_TAG], run)
    times = [a.modified for a in arrivals if a.modified is not None]
    materialized = _latest_materialized(instance, asset, [a.day for a in arrivals], min(times)) if times else {}
    todo, done, held = [], [], []  # held: failed or running; listed last, so a skip message shows them
    for key, arrival in keys.items():
        run = runs.get(key)
        if run is not None:
            (done if run.status == dg.DagsterRunStatus.SUCCESS else held).append(_taken_by(arrival, run))
        elif arrival.modified is not None and materialized.get(arrival.day, 0.0) >= arrival.modified:
            done.append(f"{arrival.day}: {asset.to_user_string()} was materialized after this file was written")
        else:
            todo.append(arrival)
    return todo, done + held


def still_being_written(arrivals: list[Arrival], now: float | None = None) -> tuple[list[Arrival], list[str]]:
    """(arrivals to launch, why the others wait): a local file that changed within WRITING_GRACE_SECONDS and does
    not end with Parquet's footer is still being written; a run of it now would fail (and alert) on half a file.
    Read: its last 4 bytes. An object store's file appears only once its upload is complete."""
    now = time.time() if now is None else now
    ready, waiting = [], []
    for arrival in arrivals:
        age = now - arrival.modified if arrival.modified is not None else None
        if age is None or age >= WRITING_GRACE_SECONDS or _ends_as_parquet(arrival.uri):
            ready.append(arrival)
        else:
            waiting.append(
                f"{arrival.day}: {arrival.uri} does not end as a Parquet file does and changed {max(age, 0):.0f} s "
                f"ago: still being written? Taken in once complete, or as it is after {WRITING_GRACE_SECONDS:.0f} s"
            )
    return ready, waiting


def _ends_as_parquet(uri: str) -> bool:
    """Whether a local file is a whole Parquet file by its frame: the magic bytes at both ends and a footer whose
    stated length fits between them (a file a streaming writer has just opened is only the leading magic, which
    also ends with it); True for anything else (not judged here)."""
    fs, path = fsspec.core.url_to_fs(uri)
    if not set(fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) & {"file", "local"}:
        return True
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never blocks, even on a FIFO put there since
    except OSError:
        return True  # gone or unreadable: its run says so
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            return True
        magic = len(PARQUET_MAGIC)
        if info.st_size < 2 * magic + 4:  # leading magic, footer length, trailing magic
            return False
        tail = os.pread(handle, 4 + magic, info.st_size - 4 - magic)
        footer = int.from_bytes(tail[:4], "little")
        return (
            tail[4:] == PARQUET_MAGIC
            and os.pread(handle, magic, 0) == PARQUET_MAGIC
            and 0 < footer <= info.st_size - 2 * magic - 4
        )
    finally:
        os.close(handle)


def _taken_by(arrival: Arrival, run: dg.DagsterRun) -> str:
    status = run.status.value
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return f"{arrival.day}: this file version already ran (run {run.run_id[:8]} succeeded)"
    if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        return (
            f"{arrival.day}: run {run.run_id[:8]} {status.lower()} on this file version ({arrival.uri}); "
            "correct or re-deliver the file and it runs again"
        )
    return f"{arrival.day}: run {run.run_id[:8]} for this file version is {status.lower()}"


def skip_message(what: str, skipped: list[str], limit: int = 8) -> str:
    """One skip reason that says what was skipped and why (the first `limit` days, then a count)."""
    if not skipped:
        return f"no {what} found"
    shown = "; ".join(skipped[-limit:])  # the latest days matter most
    more = f" ({len(skipped) - limit} earlier days not shown)" if len(skipped) > limit else ""
    return f"nothing to launch for the {what}{more}: {shown}"
