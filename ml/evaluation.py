"""Holdout metrics of a binary classifier, and the input checks every evaluation shares.

`binary_metrics` turns holdout labels and predicted probabilities into a flat dict of plain floats,
ready for JSON, MLflow and Dagster metadata. `check_inputs` is the one place where labels and scores
are validated (`ml.plots` reuses it), so a bad holdout fails with a message that names the problem
and the offending values instead of a sklearn traceback or, worse, a silently wrong number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

METRIC_DESCRIPTIONS: dict[str, str] = {
    "roc_auc": "Area under the ROC curve: chance that a random positive is scored above a random negative.",
    "pr_auc": "Average precision: area under the precision-recall curve; compare with positive_rate.",
    "log_loss": "Mean negative log-likelihood of the labels under the predicted probabilities.",
    "brier": "Mean squared error of the predicted probabilities (0 is perfect).",
    "accuracy": "Share of rows classified correctly at the threshold.",
    "f1": "Harmonic mean of precision and recall at the threshold.",
    "precision": "Share of rows predicted positive (score >= threshold) that are positive.",
    "recall": "Share of positive rows predicted positive (score >= threshold).",
    "threshold": "Score at or above which a row is predicted positive.",
    "rows": "Number of holdout rows evaluated.",
    "positive_rate": "Share of holdout rows that are positive (the base rate).",
}

# Only the quality metrics: threshold, rows and positive_rate describe the holdout, they are not scores.
HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "brier": False,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
}


class EvaluationError(ValueError):
    """Labels, scores or threshold cannot be evaluated; the message names the problem and the values."""


def _plain(value: object) -> object:
    # numpy scalars repr as `np.int64(2)` under numpy 2; messages should show `2`.
    return value.item() if isinstance(value, np.generic) else value


def _sorted_sample(values: Sequence[object], limit: int = 10) -> list[object]:
    plain = [_plain(v) for v in values]
    try:
        plain = sorted(plain)
    except TypeError:  # mixed types (e.g. strings and numbers) do not compare
        plain = sorted(plain, key=repr)
    return plain[:limit]


def check_inputs(labels: Sequence | np.ndarray | pd.Series, scores: Sequence | np.ndarray | pd.Series):
    """Validate a holdout and return it as (int 0/1 labels, float scores) numpy arrays."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise EvaluationError(f"labels must be one-dimensional, got shape {y.shape}")
    try:
        p = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"scores must be numbers: {exc}") from exc
    if p.ndim != 1:
        raise EvaluationError(f"scores must be one-dimensional, got shape {p.shape}")
    if len(y) != len(p):
        raise EvaluationError(f"{len(y)} labels but {len(p)} scores")
    if len(y) == 0:
        raise EvaluationError("holdout is empty: no labels and no scores")

    # `v in (0, 1)` accepts 0/1 as int, float or bool and rejects NaN, strings and anything else.
    bad = [v for v in pd.unique(y.astype(object)) if not (isinstance(v, (int, float, np.number)) and v in (0, 1))]
    if bad:
        raise EvaluationError(f"labels must be 0/1, found values {_sorted_sample(bad)}")
    y = y.astype(int)

    nan = int(np.isnan(p).sum())
    if nan:
        raise EvaluationError(f"scores contain {nan} NaN value(s)")
    outside = p[(p < 0) | (p > 1)]
    if outside.size:
        raise EvaluationError(
            f"scores must be probabilities in [0, 1]; {outside.size} value(s) outside, e.g. {outside[0]:g}"
        )

    # ROC AUC, average precision and calibration all need both classes; say why rather than return NaN.
    classes = np.unique(y)
    if classes.size < 2:
        raise EvaluationError(
            f"holdout has only one class (all {classes[0]}); ROC AUC is undefined"
            " — the holdout is too small or the labels are constant"
        )
    return y, p


def check_threshold(threshold: float) -> float:
    """The decision threshold must lie strictly inside (0, 1); at 0 or 1 one class is never predicted."""
    try:
        value = float(threshold)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"threshold must be a number in (0, 1), got {threshold!r}") from exc
    if not 0.0 < value < 1.0:  # also rejects NaN
        raise EvaluationError(f"threshold must be in (0, 1), got {value:g}")
    return value


def binary_metrics(
    labels: Sequence | np.ndarray | pd.Series, scores: Sequence | np.ndarray | pd.Series, threshold: float
) -> dict[str, float]:
    """Holdout metrics; threshold-based ones predict positive iff score >= threshold."""
    threshold = check_threshold(threshold)
    y, p = check_inputs(labels, scores)
    predicted = (p >= threshold).astype(int)
    values = {
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        # labels=[0, 1] pins the class order, so a probability always means P(label == 1).
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, p),
        "accuracy": skm.accuracy_score(y, predicted),
        # zero_division=0: a threshold that predicts no positives scores 0, not a warning and NaN.
        "f1": skm.f1_score(y, predicted, zero_division=0),
        "precision": skm.precision_score(y, predicted, zero_division=0),
        "recall": skm.recall_score(y, predicted, zero_division=0),
        "threshold": threshold,
        "rows": len(y),
        "positive_rate": y.mean(),
    }
    # Plain floats: numpy scalars are not JSON-serialisable and MLflow/Dagster metadata want floats.
    return {key: float(value) for key, value in values.items()}


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """The standard error of a ROC AUC measured on this many positives and negatives (Hanley & McNeil,
    1982): how far a day's AUC moves by chance alone. Infinite when a class is missing."""
    if positives < 1 or negatives < 1 or not np.isfinite(auc):
        return float("inf")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return float(np.sqrt(max(variance, 0.0)))
