"""The reproducible holdout: which rows a model is trained on and which it is judged on.

Without a timestamp, a row's side is decided by a seeded hash of its id, not by its position: the
same id lands on the same side in every run and as rows are added, so a holdout row never leaks into
a later training set built with the same seed.

With a timestamp (`dataset.timestamp`), the holdout is the latest `fraction` of the rows by time (ties
at the cut broken by the id's hash): a model is judged on rows later than every row it learned from,
as it will be used. Rows split with explicit `keys` (the recent labelled days of a retrain, keyed by
id and day) are split by the keys' hash whatever the spec says: each of those days trains on most of
its rows and lends the rest to the holdout, so a retrain learns the newest days and is judged on them.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from ml.features import FeatureConfig, FeatureState, feature_table, fit_features
from ml.spec import DatasetSpec

TRAIN, HOLDOUT = "train", "holdout"


class SplitError(ValueError):
    """The rows cannot be split as configured; the message says why."""


def _unit_interval(ids: pd.Series, seed: int) -> np.ndarray:
    # sha256 of "seed:id" read as a number in [0, 1): stable across runs, machines and Python versions.
    salt = f"{seed}:".encode()
    return np.array(
        [int.from_bytes(hashlib.sha256(salt + str(i).encode()).digest()[:8], "big") / 2**64 for i in ids],
        dtype="float64",
    )


def _latest(frame: pd.DataFrame, spec: DatasetSpec, fraction: float, seed: int) -> np.ndarray:
    """True for the latest `fraction` of the rows by the spec's timestamp (ties ordered by the id's hash)."""
    column = spec.timestamp.column
    when = pd.to_datetime(frame[column], utc=True, errors="coerce")
    if when.isna().any():
        bad = frame.loc[when.isna(), column].head(3).tolist()
        raise SplitError(
            f"the timestamp column {column!r} has {int(when.isna().sum())} missing or unreadable value(s), "
            f"e.g. {bad}; the holdout is the latest rows by time, so every row needs one"
        )
    order = np.lexsort((_unit_interval(frame[spec.id.column], seed), when.dt.tz_localize(None).to_numpy()))
    holdout = np.zeros(len(frame), dtype=bool)
    count = math.ceil(fraction * len(frame)) if len(frame) > 1 else 0
    holdout[order[len(frame) - count :]] = True
    return holdout


def split_rule(spec: DatasetSpec, *, fraction: float, seed: int) -> str:
    """How `assign_split` picks the holdout for rows of this spec, in words (shown with the training set)."""
    if spec.timestamp is not None:
        return f"the latest {fraction:.0%} of the rows by {spec.timestamp.column}"
    return f"{fraction:.0%} by seeded hash of {spec.id.column} (seed {seed})"


def assign_split(
    frame: pd.DataFrame, spec: DatasetSpec, *, fraction: float, seed: int, keys: pd.Series | None = None
) -> pd.Series:
    """A `split` column (train / holdout) aligned with `frame`: the latest rows when the spec has a
    timestamp (and the frame has that column), else by the hash of the id; by the hash of `keys` when given."""
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"training.holdout_fraction must be between 0 and 1 (exclusive), got {fraction}")
    if keys is None and spec.timestamp is not None and spec.timestamp.column in frame.columns:
        holdout = _latest(frame, spec, fraction, seed)
    else:
        holdout = _unit_interval(frame[spec.id.column] if keys is None else keys, seed) < fraction
    split = pd.Series(np.where(holdout, HOLDOUT, TRAIN), index=frame.index, name="split")
    counts = split.value_counts()
    if counts.get(TRAIN, 0) == 0 or counts.get(HOLDOUT, 0) == 0:
        raise SplitError(
            f"holdout_fraction {fraction} leaves {counts.get(TRAIN, 0)} training and {counts.get(HOLDOUT, 0)} "
            f"holdout rows out of {len(frame)}; both sides need rows"
        )
    return split


SPLIT = "split"


def split_rows(
    rows: pd.DataFrame, spec: DatasetSpec, *, fraction: float, seed: int, keys: pd.Series | None = None
) -> pd.DataFrame:
    """The rows with a `split` column (train / holdout) after the spec's columns."""
    return rows.assign(**{SPLIT: assign_split(rows, spec, fraction=fraction, seed=seed, keys=keys).to_numpy()})


def side(rows: pd.DataFrame, which: str) -> pd.DataFrame:
    """The train or holdout rows of a split table, without the `split` column."""
    return rows[rows[SPLIT] == which].drop(columns=SPLIT).reset_index(drop=True)


def training_features(
    rows: pd.DataFrame, spec: DatasetSpec, config: FeatureConfig
) -> tuple[pd.DataFrame, FeatureState]:
    """The feature state fitted on the train rows of a split table, and the feature table of all its rows
    (id, [timestamp], split, features, label)."""
    state = fit_features(side(rows, TRAIN), spec, config)
    table = feature_table(rows.drop(columns=SPLIT), state, spec, with_target=True)
    table.insert(1, SPLIT, rows[SPLIT].to_numpy())
    return table, state
