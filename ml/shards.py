"""A day's rows as N shards: which rows shard i scores, and which shard this process is.

Shard i of N is a contiguous range of the rows file, so the shards' outputs, in shard order, are
the single-process output in row order. The ranges follow the file's row groups when it has at
least N of them (split "row_groups": a shard reads whole row groups, balanced by rows); a file with
fewer row groups than shards is split by rows ("rows": a shard slices the row groups it overlaps).

The index comes from, in order: the `--shard` argument, `KEEL_SHARD_INDEX` (the local launcher sets
it), or the platform the process runs on:

- SageMaker (one training job with `InstanceCount: N`): `current_host`'s position in `hosts` of
  /opt/ml/input/config/resourceconfig.json (hosts are algo-1 ... algo-N);
- Vertex AI (workerPoolSpecs[0] with 1 replica, workerPoolSpecs[1] with N - 1): `CLUSTER_SPEC`'s
  task, `workerpool0` index 0 being shard 0 and `workerpool1` index j shard j + 1;
- Azure ML (a command job with `instance_count: N` and a PyTorch distribution of one process per
  instance, so Azure ML sets the node's rank): `NODE_RANK`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

INDEX_VARIABLE = "KEEL_SHARD_INDEX"


class ShardError(ValueError):
    """The shard cannot be chosen; the message names the value or variable."""


def part_name(index: int, count: int) -> str:
    """`part-00001-of-00003`: the stem of shard `index`'s files."""
    return f"part-{index:05d}-of-{count:05d}"


@dataclass(frozen=True)
class ShardRange:
    index: int
    count: int
    start: int  # first row (inclusive) in the file
    stop: int  # last row (exclusive)
    split: str  # "row_groups" or "rows"

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan(metadata: pq.FileMetaData, count: int) -> list[ShardRange]:
    """The N contiguous row ranges of a file, at row-group edges when it has at least N row groups."""
    if count < 1:
        raise ShardError(f"shards must be a positive integer, got {count!r}")
    sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    edges = np.concatenate([[0], np.cumsum(sizes, dtype="int64")])
    total = int(edges[-1])
    if total < count:
        raise ShardError(f"the file has {total} rows, fewer than the {count} shards asked for")
    if len(sizes) >= count:
        # The row-group edge nearest each even cut, kept strictly increasing so no shard is empty.
        cuts = [0]
        for i in range(1, count):
            nearest = int(np.argmin(np.abs(edges - total * i / count)))
            cuts.append(min(max(nearest, cuts[-1] + 1), len(sizes) - (count - i)))
        cuts.append(len(sizes))
        bounds, split = [int(edges[c]) for c in cuts], "row_groups"
    else:
        bounds, split = [total * i // count for i in range(count + 1)], "rows"
    return [ShardRange(i, count, bounds[i], bounds[i + 1], split) for i in range(count)]


class ShardView:
    """The rows of one shard of a Parquet file, read the way `pq.ParquetFile` reads them (`iter_batches`)."""

    def __init__(self, parquet: pq.ParquetFile, shard: ShardRange) -> None:
        self.parquet, self.shard = parquet, shard
        self.schema_arrow = parquet.schema_arrow
        self.metadata = _Rows(shard.rows)

    def iter_batches(self, batch_size: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        meta = self.parquet.metadata
        groups, first = [], None
        offset = 0
        for g in range(meta.num_row_groups):
            size = meta.row_group(g).num_rows
            if offset + size > self.shard.start and offset < self.shard.stop:
                groups.append(g)
                first = offset if first is None else first
            offset += size
        if not groups:
            return
        skip, left = self.shard.start - first, self.shard.rows
        for batch in self.parquet.iter_batches(batch_size=batch_size, columns=columns, row_groups=groups):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            batch = batch.slice(skip, min(batch.num_rows - skip, left))
            skip, left = 0, left - batch.num_rows
            if batch.num_rows:
                yield batch
            if left == 0:
                return


@dataclass(frozen=True)
class _Rows:
    num_rows: int


def _from_sagemaker(environ: Mapping[str, str]) -> int | None:
    root = Path(environ.get("KEEL_SAGEMAKER_ROOT", "/opt/ml"))
    path = root / "input" / "config" / "resourceconfig.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    hosts, current = config.get("hosts") or [], config.get("current_host")
    if current not in hosts:
        raise ShardError(f"{path}: current_host {current!r} is not among hosts {hosts}")
    ordered = sorted(hosts, key=lambda host: (len(host), host))  # algo-2 before algo-10
    return ordered.index(current)


def _from_vertex(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("CLUSTER_SPEC", "").strip()
    if not raw:
        return None
    task = json.loads(raw).get("task", {})
    pool, index = task.get("type"), task.get("index", 0)
    if pool == "workerpool0":
        return int(index)
    if pool == "workerpool1":
        return 1 + int(index)
    raise ShardError(f"CLUSTER_SPEC task {task!r}: scoring shards run in workerpool0 and workerpool1 only")


def _from_azureml(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("NODE_RANK", "").strip()
    return int(raw) if raw else None


def detected_index(argument: int | None = None, environ: Mapping[str, str] | None = None) -> tuple[int | None, str]:
    """(this process's shard index or None, where it came from): the argument, KEEL_SHARD_INDEX, the platform."""
    environ = os.environ if environ is None else environ
    if argument is not None:
        return argument, "--shard"
    raw = environ.get(INDEX_VARIABLE, "").strip()
    if raw:
        if not raw.isdigit():
            raise ShardError(f"{INDEX_VARIABLE}={raw!r} is not a shard index")
        return int(raw), INDEX_VARIABLE
    for platform, origin in ((_from_sagemaker, "resourceconfig.json"), (_from_vertex, "CLUSTER_SPEC")):
        index = platform(environ)
        if index is not None:
            return index, origin
    return _from_azureml(environ), "NODE_RANK"


def shard_index(count: int, argument: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """This process's shard of `count`, checked against it; a single shard needs no index."""
    index, origin = detected_index(argument, environ)
    if index is None:
        if count == 1:
            return 0
        raise ShardError(
            f"scoring in {count} shards, but this process's shard is unknown: pass --shard or set {INDEX_VARIABLE}"
        )
    if not 0 <= index < count:
        raise ShardError(f"shard {index} (from {origin}) is not one of 0..{count - 1}")
    return index
