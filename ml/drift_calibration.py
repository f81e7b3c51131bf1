"""Per-column drift thresholds calibrated from the reference's own variation, at the current day's size.

A fixed threshold ("Wasserstein 0.1", "p < 0.05") means something different at 200 rows and at 2
million, and on a column whose days differ a lot by nature (the weather) and on one that barely
moves. So each column's threshold is the score that same-distribution data reaches by itself:

- **sample to sample**: the reference is split at random into a part of the current day's size and
  the rest, `rounds` times; each split's score, rescaled from the split's sizes to (reference, day)
  sizes (these distances shrink as 1/sqrt(effective rows) under no drift), is a score of "no drift";
- **day to day**, when the reference holds whole days: each reference day against the other days,
  which adds the variation between normal days (a cold day is not drift). Reference days differ in
  size (2 rows or 300): a small day's score is mostly its own sampling noise, which says nothing about
  a day of the current size, so each day's score loses the no-drift level at its own size (in
  quadrature) and what remains, the variation between days, is added to the level at the current size.

The threshold is the largest of (mean + 3.5 sd of the sample scores, at the day's size) and that day
level, times `margin`; a day's column drifts when its score exceeds it. The scores are Evidently's own stattests
(normed Wasserstein distance for numbers, Jensen-Shannon distance for categories), so the report
shows the same numbers the verdict used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

NUMERIC_METHOD, CATEGORY_METHOD = "wasserstein", "jensenshannon"
MEANING = {
    NUMERIC_METHOD: "Wasserstein distance between the day's and the reference's values, in reference standard deviations",
    CATEGORY_METHOD: "Jensen-Shannon distance between the day's and the reference's category shares (0 same, 1 disjoint)",
}
MIN_DAYS = 3  # fewer reference days say nothing about day-to-day variation


@dataclass(frozen=True)
class Calibration:
    """How one column's threshold was found."""

    method: str
    threshold: float
    sample_level: float  # mean + `spread` sd of the sample-to-sample scores, at the day's size
    day_level: float | None  # the largest day-to-day score, when the reference holds whole days
    basis: str  # in words, for the report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def method_for(kind: str) -> str:
    return NUMERIC_METHOD if kind == "numeric" else CATEGORY_METHOD


def score(reference: pd.Series, current: pd.Series, kind: str) -> float:
    """The drift score Evidently's stattest of this kind gives (missing values dropped, as Evidently does).

    The same formulas as Evidently's `wasserstein` and `jensenshannon` (tests/ml/test_drift_calibration.py
    checks they agree), computed directly on arrays: calibration scores a column some eighty times, and
    Evidently's per-call overhead is about 0.2 s.
    """
    values, _ = _encoded(pd.concat([reference, current], ignore_index=True), kind)
    return _score(values[: len(reference)], values[len(reference) :], kind)


def _encoded(values: pd.Series, kind: str) -> tuple[np.ndarray, int]:
    """Numbers as float64 (NaN missing), categories as codes (-1 missing), and the number of codes."""
    if kind == "numeric":
        return values.to_numpy(dtype="float64", na_value=np.nan), 0
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    return codes, len(uniques)


def _score(reference: np.ndarray, current: np.ndarray, kind: str, levels: int | None = None) -> float:
    if kind == "numeric":
        reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
        norm = max(float(np.std(reference)), 0.001)
        return float(stats.wasserstein_distance(reference, current) / norm)
    reference, current = reference[reference >= 0], current[current >= 0]
    size = levels or int(max(reference.max(initial=-1), current.max(initial=-1)) + 1)
    ref_shares = np.bincount(reference, minlength=size) / max(len(reference), 1)
    cur_shares = np.bincount(current, minlength=size) / max(len(current), 1)
    return float(distance.jensenshannon(ref_shares, cur_shares))


def _size_factor(reference_rows: int, current_rows: int, left: int, right: int) -> float:
    # The no-drift spread of these distances goes as sqrt(1/n1 + 1/n2).
    return float(np.sqrt((1 / reference_rows + 1 / current_rows) / (1 / left + 1 / right)))


def calibrate_column(
    reference: pd.Series,
    kind: str,
    current_rows: int,
    *,
    days: np.ndarray | None = None,
    rounds: int = 50,
    spread: float = 3.5,
    margin: float = 1.0,
    max_days: int = 30,
    seed: int = 0,
) -> Calibration:
    """The threshold a day of `current_rows` rows must exceed for this column to count as drifted."""
    encoded, levels = _encoded(reference.reset_index(drop=True), kind)
    present = ~np.isnan(encoded) if kind == "numeric" else encoded >= 0
    values = encoded[present]
    method = method_for(kind)
    if len(values) < 4:
        return Calibration(method, float("inf"), float("inf"), None, f"only {len(values)} reference values: no test")
    rng = np.random.default_rng(seed)
    part = max(2, min(current_rows, len(values) // 2))
    raw_scores = []
    for _ in range(rounds):
        mask = np.zeros(len(values), dtype=bool)
        mask[rng.choice(len(values), size=part, replace=False)] = True
        raw_scores.append(_score(values[~mask], values[mask], kind, levels))
    # mean + `spread` standard deviations of the no-drift scores: beyond the 99th percentile of such
    # right-skewed scores, where 50 splits cannot show a high quantile by themselves (and a threshold
    # from fewer splits swings enough to double the false alarms of an unlucky reference).
    raw_level = float(np.mean(raw_scores) + spread * np.std(raw_scores))

    def noise(left: int, right: int) -> float:
        """The no-drift level of a score between `left` and `right` rows (rescaled from the splits)."""
        return raw_level * _size_factor(right, max(left, 1), part, len(values) - part)

    sample_level = noise(current_rows, len(values))
    day_level, day_count = None, 0
    if days is not None:
        day_codes, _ = pd.factorize(pd.Series(days)[present].to_numpy(), sort=True)
        counts = np.bincount(day_codes)
        usable = np.flatnonzero(counts >= 2)
        day_count = len(usable)
        if day_count >= MIN_DAYS:
            # The most recent days when there are many: they are what "normal" looks like now. A day's
            # score holds its sampling noise at its own size (large for a day of a few rows) and the
            # variation between days; only the latter carries over to a day of `current_rows` rows, so the
            # noise at the day's size comes off (in quadrature) and the noise at the current size goes on.
            chosen = usable[-max_days:]
            between = 0.0
            for d in chosen:
                size = int(counts[d])
                day_score = _score(values[day_codes != d], values[day_codes == d], kind, levels)
                between = max(between, day_score**2 - noise(size, len(values) - size) ** 2)
            day_level = float(np.sqrt(between + sample_level**2))
    level = max(sample_level, day_level or 0.0)
    basis = f"mean + {spread:g} sd of {rounds} random splits of {len(values)} reference values, at {current_rows} rows"
    if day_level is not None:
        basis += (
            f", and the largest variation between {min(day_count, max_days)} reference days "
            "(each against the others, less the noise of its size), at this size"
        )
    return Calibration(
        method, level * margin, sample_level, day_level, basis + (f", x{margin:g}" if margin != 1 else "")
    )


def calibrate(
    reference: pd.DataFrame,
    kinds: dict[str, str],
    current_rows: int,
    *,
    days: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Calibration]:
    """A calibration per column of `kinds` (column -> numeric | categorical | boolean)."""
    return {
        column: calibrate_column(reference[column], kind, current_rows, days=days, seed=seed + i)
        for i, (column, kind) in enumerate(kinds.items())
    }
