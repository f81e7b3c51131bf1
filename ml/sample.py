"""A seeded sample of rows chosen by their ids: the same rows whatever the order, the chunking or the file.

A row is kept when its seeded 64-bit id hash is among the `k` smallest (ties by position), so two
samples of overlapping rows keep the same shared rows, appending rows can only displace kept rows
by new ones, and a streamed sample equals the in-memory one. The drift reference (registration) and
the capture of a scored day (ml/score.py) are both drawn this way.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa


def _hash_key(seed: int) -> str:
    # pandas' keyed hash takes a 16-character key; derive it from the seed so the seed picks the sample.
    return hashlib.blake2b(str(seed).encode(), digest_size=8).hexdigest()


def id_hashes(ids: pd.Series | np.ndarray | pa.Array, seed: int) -> np.ndarray:
    """A seeded 64-bit hash per id (as text, so 7 and "7" are the same id); vectorised, ~0.2 s per million."""
    values = ids.to_pandas() if isinstance(ids, pa.Array | pa.ChunkedArray) else ids
    text = pd.Series(values, copy=False).astype(str).to_numpy(dtype=object)
    return pd.util.hash_array(text, hash_key=_hash_key(seed), categorize=False)


def smallest(hashes: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest hashes, ties broken by position, returned in row order."""
    order = np.lexsort((positions, hashes))[:k]
    return np.sort(order)


class StreamSample:
    """The sample of a stream of Arrow tables (each with the id column): at most `k` rows (None: all), in row order.

    Memory is the sample plus one table, whatever the stream's length.
    """

    def __init__(self, k: int | None, id_column: str, seed: int) -> None:
        if k is not None and k < 1:
            raise ValueError(f"a sample keeps at least 1 row or all (None), not {k}")
        self.k, self.id_column, self.seed = k, id_column, seed
        self.parts: list[pa.Table] = []
        self.hashes = np.empty(0, dtype="uint64")
        self.positions = np.empty(0, dtype="int64")
        self.seen = 0

    def add(self, table: pa.Table) -> None:
        start, self.seen = self.seen, self.seen + len(table)
        if self.k is None:
            self.parts.append(table)
            return
        hashes = id_hashes(table.column(self.id_column), self.seed)
        positions = np.arange(start, start + len(table))
        if len(self.hashes) >= self.k:  # only rows that beat the sample's largest hash can enter it
            beat = np.flatnonzero(hashes <= self.hashes.max())
            table, hashes, positions = table.take(beat), hashes[beat], positions[beat]
        merged = pa.concat_tables([*self.parts, table]) if self.parts else table
        hashes, positions = np.concatenate([self.hashes, hashes]), np.concatenate([self.positions, positions])
        keep = smallest(hashes, positions, self.k)
        self.parts, self.hashes, self.positions = [merged.take(keep)], hashes[keep], positions[keep]

    def table(self, schema: pa.Schema) -> pa.Table:
        """The sample (empty with `schema` when the stream had no rows)."""
        return pa.concat_tables(self.parts).combine_chunks() if self.parts else schema.empty_table()
