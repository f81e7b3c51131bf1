"""A scored day on storage: N part files and a capture, made visible by one manifest that appears last.

    predictions/day=D/manifest.json                       the day's output, replaced in one step
    predictions/day=D/run-<id>/part-00000-of-00003.parquet ...  one attempt's parts (id, score)
    predictions/day=D/run-<id>/capture.parquet            the attempt's capture (the merged samples)

Every shard writes its part, its capture sample and (last) its report into a fresh attempt folder;
`publish` then checks that all N reports are there and agree with their files, merges the samples
into the capture, and replaces `manifest.json`. Until then readers see the previous manifest and the
previous attempt's files, so a failed shard leaves the previous day in place. Attempts other than
the published one and the one before it are removed after publishing (a reader that opened the
previous manifest a moment ago can still read its files), once none of their files is younger than
IN_FLIGHT_SECONDS: a second run of the same day may still be scoring or publishing into its own.

Two runs of one day are not serialized (the store may be a bucket: no lock spans it). Each publishes
whole: a run never removes another's attempt in flight, and one that finds, after writing the
manifest, a file it names gone (a peer whose clock is far ahead) puts the manifest it replaced back
and fails, naming the day.

Readers use `read_predictions` (the scores, parts in order) and `capture_uri` (the capture file),
never the folders: a day is whatever its manifest says.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml import io
from ml.sample import id_hashes, smallest
from ml.shards import part_name

MANIFEST = "manifest.json"
CAPTURE = "capture.parquet"
FORMAT = 1
_HISTOGRAM_BINS = 100_000  # as ml/score.py's
# An attempt with a file written this recently may belong to a run still scoring or publishing: it is
# never removed. Run monitoring fails a run after max_runtime_seconds (6 h, orchestration/dagster.yaml);
# a day leaves room for that, a longer limit set for a run, and the clocks of a store and a machine.
IN_FLIGHT_SECONDS = 24 * 3600


class PredictionsError(ValueError):
    """A day's output is missing, incomplete or does not match its manifest; the message names the file."""


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _relative(day_uri: str, uri: str) -> str:
    return uri[len(day_uri.rstrip("/")) + 1 :]


def _join(day_uri: str, relative: str) -> str:
    return f"{day_uri.rstrip('/')}/{relative}"


def shard_reports(attempt_uri: str, shards: int) -> list[dict[str, Any]]:
    """The N shard reports of an attempt, in shard order; a missing one names the shard."""
    reports = []
    if not io.exists(attempt_uri):
        # A publish removes every attempt but its own, the one before and those written to within
        # IN_FLIGHT_SECONDS: this folder was idle that long while its run went on, or was removed by hand.
        raise PredictionsError(
            f"this run's attempt folder {attempt_uri} is gone: another run of the same day published first "
            "and removed it (or it was removed by hand); the day's predictions are as before, and nothing "
            "of this run is published"
        )
    for index in range(shards):
        uri = f"{attempt_uri.rstrip('/')}/{part_name(index, shards)}.json"
        if not io.exists(uri):
            raise PredictionsError(f"shard {index} of {shards} wrote no report ({uri}): the day is not published")
        reports.append(io.read_json(uri))
    return reports


def merge_captures(tables: list[pa.Table], id_column: str, k: int | None, seed: int) -> pa.Table:
    """The shards' samples as one: equal to the single-process sample of the whole day.

    A row is in the day's sample when its id hash is among the k smallest of the day (ties by row
    position), so it is among the k smallest of its own shard too: the union of the shards' samples
    holds the day's sample, and shards are contiguous, so their concatenation is in row order.
    """
    table = pa.concat_tables(tables).combine_chunks()
    if k is None or len(table) <= k:
        return table
    keep = smallest(id_hashes(table.column(id_column), seed), np.arange(len(table)), k)
    return table.take(keep)


def _quantile(histogram: np.ndarray, rows: int, q: float) -> float:
    rank = q * (rows - 1)
    index = int(np.searchsorted(np.cumsum(histogram), rank, side="right"))
    return round((index + 0.5) / _HISTOGRAM_BINS, 6)


def publish(day_uri: str, attempt_uri: str, shards: int, capture_rows: int | None, capture_seed: int) -> dict[str, Any]:
    """Check an attempt's N shards, write its capture, replace the day's manifest; the day's report."""
    reports = shard_reports(attempt_uri, shards)
    parts, captures, histogram = [], [], np.zeros(_HISTOGRAM_BINS, dtype="int64")
    expected_start = 0
    for index, report in enumerate(reports):
        shard = report["shard"]
        if (shard["index"], shard["count"], shard["start"]) != (index, shards, expected_start):
            raise PredictionsError(
                f"shard {index} of {shards} reports shard {shard['index']} of {shard['count']} from row "
                f"{shard['start']}, expected row {expected_start}: the shards were not cut from the same file"
            )
        expected_start = shard["stop"]
        part = f"{attempt_uri.rstrip('/')}/{part_name(index, shards)}.parquet"
        actual = io.file_digest(part)
        if actual != report["predictions_sha256"]:
            raise PredictionsError(f"{part} has sha256 {actual}, its shard reported {report['predictions_sha256']}")
        parts.append({"path": _relative(day_uri, part), "rows": report["rows"], "sha256": actual})
        captures.append(_read_table(part.removesuffix(".parquet") + ".capture.parquet"))
        np.add.at(histogram, shard["histogram"]["bins"], shard["histogram"]["counts"])
    first = reports[0]
    for key in ("model_manifest_sha256", "model_version", "id_column", "rows_uri"):
        differing = {r[key] for r in reports}
        if len(differing) > 1:
            raise PredictionsError(f"the shards of {attempt_uri} disagree on {key}: {sorted(map(str, differing))}")
    capture = merge_captures(captures, first["id_column"], capture_rows, capture_seed)
    capture_uri = f"{attempt_uri.rstrip('/')}/{CAPTURE}"
    with io.atomic_output(capture_uri if io.is_remote(capture_uri) else io.resolve(capture_uri)) as tmp:
        pq.write_table(capture, str(tmp))
    rows = sum(r["rows"] for r in reports)
    document = {
        "format": FORMAT,
        "id_column": first["id_column"],
        "model_manifest_sha256": first["model_manifest_sha256"],
        "model_version": first["model_version"],
        "rows": rows,
        "rows_uri": first["rows_uri"],
        "shards": shards,
        "split": first["shard"]["split"],
        "parts": parts,
        "capture": {
            "path": _relative(day_uri, capture_uri),
            "rows": len(capture),
            "sha256": io.file_digest(capture_uri),
        },
    }
    document["sha256"] = _digest(document)  # of everything above: the day's data version
    manifest_uri = _join(day_uri, MANIFEST)
    replaced = _read_bytes(manifest_uri)  # read last: another run of the day may have published meanwhile
    previous = _attempt_of(replaced)
    io.write_json(document, manifest_uri)  # last: the day is now this attempt
    _require_named_files(day_uri, document, replaced)
    _remove_attempts(day_uri, keep={_relative(day_uri, attempt_uri.rstrip("/")), previous})
    seconds = max(r["seconds"] for r in reports)
    return {
        "rows": rows,
        "shards": shards,
        "split": document["split"],
        "manifest_sha256": document["sha256"],
        # Of the files' contents only: the same rows and model give the same value on every rerun.
        "content_sha256": _digest({"parts": [p["sha256"] for p in parts], "capture": document["capture"]["sha256"]}),
        "predictions_uri": day_uri,
        "capture_uri": _join(day_uri, document["capture"]["path"]),
        "capture_rows": len(capture),
        "score_mean": round(sum(r["shard"]["score_sum"] for r in reports) / rows, 6),
        "score_quantiles": {f"p{int(q * 100)}": _quantile(histogram, rows, q) for q in (0.1, 0.5, 0.9)},
        "seconds": seconds,  # the slowest shard's
        "rows_per_second": round(rows / max(seconds, 1e-9), 1),
        "model_manifest_sha256": first["model_manifest_sha256"],
        "model_version": first["model_version"],
        "predictor": first["predictor"],
        "shard_seconds": [r["seconds"] for r in reports],
        "usage": {  # the shards' processes together: their CPU summed, the slowest one's wall time
            "cpu_seconds": round(sum(r["usage"]["cpu_seconds"] for r in reports), 3),
            "wall_seconds": max(r["usage"]["wall_seconds"] for r in reports),
        },
    }


def _read_table(uri: str) -> pa.Table:
    if not io.exists(uri):
        raise PredictionsError(f"missing {uri}: the shard's capture sample was not written")
    with io.open_parquet(uri) as parquet:
        return parquet.read()


def _storage(uri: str) -> str:
    return uri if io.is_remote(uri) else io.resolve(uri)


def _read_bytes(uri: str) -> bytes | None:
    """The file's bytes; None when there is none."""
    try:
        with fsspec.open(_storage(uri), "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _attempt_of(manifest: bytes | None) -> str | None:
    if manifest is None:
        return None
    return json.loads(manifest)["parts"][0]["path"].split("/", 1)[0]


def _require_named_files(day_uri: str, document: dict[str, Any], replaced: bytes | None) -> None:
    """Every file the manifest just written names is there; else put back the manifest it replaced, and fail.

    No run removes an attempt in flight (IN_FLIGHT_SECONDS), so this fails only when a peer removed
    this run's files anyway (its clock far ahead of the store's): the day stays as it was.
    """
    named = [_join(day_uri, entry["path"]) for entry in [*document["parts"], document["capture"]]]
    fsspec.core.url_to_fs(_storage(day_uri))[0].invalidate_cache()  # the store as it is, not as listed before
    missing = [uri for uri in named if not io.exists(uri)]
    if not missing:
        return
    uri = _join(day_uri, MANIFEST)
    current = _read_bytes(uri)
    ours = current is not None and json.loads(current).get("sha256") == document["sha256"]
    if not ours:
        kept = "another run's manifest, written since, is left in place"
    elif replaced is None:
        fs, path = fsspec.core.url_to_fs(_storage(uri))
        fs.rm(path)
        kept = "its manifest was removed: the day has none, as before"
    else:
        with io.atomic_output(_storage(uri)) as tmp:
            tmp.write_bytes(replaced)
        kept = "the manifest it replaced was put back"
    raise PredictionsError(
        f"the day {day_uri} is not published by this run: {len(missing)} of the {len(named)} files its "
        f"manifest named were removed after they were checked ({missing[0]}; another run of the same day "
        f"removed them?); {kept}"
    )


def _last_written(fs: fsspec.AbstractFileSystem, path: str) -> float | None:
    """When anything in the folder (a file, a temporary file, the folder itself) was last written, in
    seconds since the epoch; None when the store cannot say."""
    times = []
    for entry in [path, *fs.find(path, withdirs=True)]:
        try:
            modified = fs.modified(entry)
        except (NotImplementedError, OSError, KeyError):  # an object store's folder has no time
            continue
        if isinstance(modified, datetime):
            modified = (modified if modified.tzinfo else modified.replace(tzinfo=UTC)).timestamp()
        times.append(float(modified))
    return max(times, default=None)


def _remove_attempts(day_uri: str, keep: set[str | None]) -> None:
    """Remove the day's attempts but `keep` and those that may be in flight (written to in IN_FLIGHT_SECONDS)."""
    fs, path = fsspec.core.url_to_fs(_storage(day_uri))
    fs.invalidate_cache()  # a listing cached earlier in this process would miss files written since
    now = time.time()
    for entry in fs.ls(path, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] != "directory" or not name.startswith("run-") or name in keep:
            continue
        written = _last_written(fs, entry["name"])
        if written is None or now - written < IN_FLIGHT_SECONDS:
            continue  # another run of the day may still be scoring or publishing into it
        fs.rm(entry["name"], recursive=True)


def read_manifest(day_uri: str) -> dict[str, Any]:
    """The day's manifest, checked against its own sha256; a day never published is a clear error."""
    uri = _join(day_uri, MANIFEST)
    if not io.exists(uri):
        raise PredictionsError(f"no predictions at {day_uri}: {MANIFEST} is missing (the day was never scored)")
    document = io.read_json(uri)
    body = {k: v for k, v in document.items() if k != "sha256"}
    if document.get("format") != FORMAT or _digest(body) != document.get("sha256"):
        raise PredictionsError(f"{uri} is not a valid manifest of format {FORMAT} (its sha256 does not match)")
    return document


def part_uris(day_uri: str) -> list[str]:
    """The day's part files, in shard (row) order."""
    return [_join(day_uri, part["path"]) for part in read_manifest(day_uri)["parts"]]


def read_predictions(day_uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The day's scores (id, score) in row order: its parts, as its manifest lists them."""
    frames = []
    for part in read_manifest(day_uri)["parts"]:
        uri = _join(day_uri, part["path"])
        with io.open_parquet(uri) as parquet:
            table = parquet.read(columns=columns)
        if len(table) != part["rows"]:
            raise PredictionsError(f"{uri} has {len(table)} rows, the manifest lists {part['rows']}")
        frames.append(table)
    return pa.concat_tables(frames).to_pandas()


def capture_uri(day_uri: str) -> str:
    """The day's capture (the seeded sample of its scored rows the drift report reads)."""
    return _join(day_uri, read_manifest(day_uri)["capture"]["path"])
