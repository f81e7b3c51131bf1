"""The day's ROC AUC estimated from the model's scores alone, before any label arrives.

Confidence-based performance estimation (the idea of NannyML's CBPE): if the scores are calibrated
(a row scored 0.3 is positive with probability 0.3), every pair of rows (i, j) with s_i > s_j is a
correctly ordered positive-negative pair with probability s_i (1 - s_j), and wrongly ordered with
probability s_j (1 - s_i). The expected AUC is the expected share of correctly ordered pairs:

    AUC ~ sum_{s_i > s_j} s_i (1 - s_j) / sum_{i != j} s_i (1 - s_j)     (ties count half)

computed in O(n log n) on the sorted scores. It sees what a change of the rows does to the model's
ranking (scores squeezed together: a lower AUC), not a change of the relation between features and
label (that needs labels). The model's scores are its own probabilities (LightGBM's binary log loss,
a logistic regression), not recalibrated: the day's estimate is compared with the same estimate on the
reference's scores, so a miscalibration common to both largely cancels. The noise of the comparison
is a seeded bootstrap of both estimates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def estimated_auc(scores: np.ndarray) -> float:
    """The expected ROC AUC of calibrated `scores` (NaN dropped); NaN with fewer than two scores."""
    s = np.sort(np.asarray(scores, dtype="float64")[~np.isnan(np.asarray(scores, dtype="float64"))])
    s = np.clip(s, 0.0, 1.0)
    if len(s) < 2:
        return float("nan")
    negatives = 1.0 - s
    # For each distinct score, the negative mass strictly below it and within its ties.
    unique, first, counts = np.unique(s, return_index=True, return_counts=True)
    below = np.concatenate([[0.0], np.cumsum(negatives)])[first]
    tied = np.add.reduceat(negatives, first)
    positive_mass = np.add.reduceat(s, first)
    # Pairs of one row with itself are not pairs: take off s_i (1 - s_i), which sits in the ties' half.
    correct = float(np.sum(positive_mass * (below + tied / 2)) - np.sum(s * negatives) / 2)
    total = float(s.sum() * negatives.sum() - np.sum(s * negatives))
    return correct / total if total > 0 else float("nan")


@dataclass(frozen=True)
class PerformanceEstimate:
    """The day's estimated AUC against the reference's, and whether the drop is beyond noise."""

    estimated_auc: float
    reference_estimated_auc: float
    drop: float  # reference - day
    drop_se: float  # bootstrap standard error of the drop
    min_drop: float
    z: float
    dropped: bool  # drop >= min_drop and drop > z * drop_se
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bootstrap_se(scores: np.ndarray, rounds: int, rng: np.random.Generator, max_rows: int) -> float:
    if len(scores) > max_rows:  # the estimate's spread at n rows goes as 1/sqrt(n): measure on fewer, rescale
        values = [estimated_auc(rng.choice(scores, max_rows)) for _ in range(rounds)]
        return float(np.nanstd(values) * np.sqrt(max_rows / len(scores)))
    return float(np.nanstd([estimated_auc(rng.choice(scores, len(scores))) for _ in range(rounds)]))


def compare(
    reference_scores: np.ndarray,
    day_scores: np.ndarray,
    *,
    min_drop: float,
    z: float,
    rounds: int = 40,
    seed: int = 0,
    max_rows: int = 5000,
) -> PerformanceEstimate:
    """The day's estimated AUC against the reference's: a drop of at least `min_drop` and beyond `z`
    bootstrap standard errors is a signal that the model will do worse on this day."""
    reference = np.asarray(reference_scores, dtype="float64")
    day = np.asarray(day_scores, dtype="float64")
    reference, day = reference[~np.isnan(reference)], day[~np.isnan(day)]
    ref_auc, day_auc = estimated_auc(reference), estimated_auc(day)
    rng = np.random.default_rng(seed)
    se = float(np.hypot(_bootstrap_se(reference, rounds, rng, max_rows), _bootstrap_se(day, rounds, rng, max_rows)))
    drop = ref_auc - day_auc
    dropped = bool(np.isfinite(drop) and drop >= min_drop and drop > z * se)
    detail = (
        f"estimated ROC AUC {day_auc:.3f} against the reference's {ref_auc:.3f} "
        f"(drop {drop:+.3f}, noise {z:g} x {se:.3f}, at least {min_drop:g} counts)"
    )
    return PerformanceEstimate(day_auc, ref_auc, float(drop), se, min_drop, z, dropped, detail)
