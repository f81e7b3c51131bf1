"""The simplest model worth beating: the best single column, as a score on its own.

Each feature column alone ranks the holdout rows: a number by its value (in whichever direction
ranks better on the training rows), a category or boolean by its share of positives on the training
rows. The best column's holdout AUC is what a model must beat by a margin before it may be the first
champion (`gate.min_auc: auto`), so the bar follows the user's data instead of one data set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ml.features import encode_target
from ml.spec import DatasetSpec


def _column_scores(train: pd.Series, holdout: pd.Series, labels: np.ndarray, numeric: bool) -> np.ndarray:
    if numeric:
        values = pd.to_numeric(holdout, errors="coerce").to_numpy(dtype="float64")
        fill = float(np.nanmedian(values)) if np.isfinite(values).any() else 0.0
        values = np.where(np.isnan(values), fill, values)
        train_values = pd.to_numeric(train, errors="coerce")
        direction = 1.0
        known = train_values.notna().to_numpy()
        if known.any() and len(set(labels[known])) == 2:
            direction = 1.0 if roc_auc_score(labels[known], train_values[known]) >= 0.5 else -1.0
        return direction * values
    keys = train.astype(object).where(train.notna(), "<missing>").map(str)
    rates = pd.Series(labels, index=train.index).groupby(keys.to_numpy()).mean()
    prior = float(labels.mean())
    held = holdout.astype(object).where(holdout.notna(), "<missing>").map(str)
    return held.map(rates).fillna(prior).to_numpy(dtype="float64")


def best_single_column(train: pd.DataFrame, holdout: pd.DataFrame, spec: DatasetSpec) -> tuple[str, float]:
    """The feature column whose ranking alone reaches the highest holdout AUC, and that AUC."""
    train_labels = encode_target(train, spec).to_numpy()
    holdout_labels = encode_target(holdout, spec).to_numpy()
    if len(set(holdout_labels)) < 2 or len(set(train_labels)) < 2:
        return "none", 0.5
    best = ("none", 0.5)
    numeric = set(spec.columns.numeric)
    for column in spec.feature_columns:
        scores = _column_scores(train[column], holdout[column], train_labels, column in numeric)
        auc = float(roc_auc_score(holdout_labels, scores))
        if auc > best[1]:
            best = (column, auc)
    return best
