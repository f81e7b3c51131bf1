"""The reproducible holdout: which rows a model is trained on and which it is judged on.

Without a timestamp, a row's side is decided by a seeded hash of its id, not by its position: the
same id lands on the same side in every run and as rows are added, so a holdout row never leaks into
a later training set built with the same seed. With a timestamp, the holdout is the latest
`fraction` of rows in time, which is how the model will be used (trained on the past, scoring the
future).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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


def assign_split(frame: pd.DataFrame, spec: DatasetSpec, *, fraction: float, seed: int) -> pd.Series:
    """A `split` column (train / holdout) aligned with `frame`."""
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"training.holdout_fraction must be between 0 and 1 (exclusive), got {fraction}")
    if spec.timestamp is not None:
        times = pd.to_datetime(frame[spec.timestamp.column])
        cutoff = times.quantile(1.0 - fraction)
        holdout = (times >= cutoff).to_numpy()
    else:
        holdout = _unit_interval(frame[spec.id.column], seed) < fraction
    split = pd.Series(np.where(holdout, HOLDOUT, TRAIN), index=frame.index, name="split")
    counts = split.value_counts()
    if counts.get(TRAIN, 0) == 0 or counts.get(HOLDOUT, 0) == 0:
        raise SplitError(
            f"holdout_fraction {fraction} leaves {counts.get(TRAIN, 0)} training and {counts.get(HOLDOUT, 0)} "
            f"holdout rows out of {len(frame)}; both sides need rows"
        )
    return split


@dataclass(frozen=True)
class TrainingSet:
    table: pd.DataFrame  # id, [timestamp], split, features, label
    state: FeatureState  # fitted on the train rows only
    holdout_rows: pd.DataFrame  # the raw holdout rows, so any model can be scored on them its own way


def build_training_set(
    raw: pd.DataFrame, spec: DatasetSpec, config: FeatureConfig, *, fraction: float, seed: int
) -> TrainingSet:
    """Split the rows, fit the feature state on the train side, and build the feature table for all rows."""
    split = assign_split(raw, spec, fraction=fraction, seed=seed)
    state = fit_features(raw[split == TRAIN], spec, config)
    table = feature_table(raw, state, spec, with_target=True)
    table.insert(1, "split", split.to_numpy())
    return TrainingSet(table, state, raw[split == HOLDOUT].reset_index(drop=True))
