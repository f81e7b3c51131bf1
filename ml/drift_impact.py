"""What a drifted column costs the model: how far its day's values move the model's scores.

A column can drift (its distribution is outside the reference's normal variation) and not matter: the
model barely reads it. Or it can matter a lot: the model's most important column with its levels
swapped. The impact measures the difference with the model itself, on the day's rows:

    impact(c) = mean over sampled day rows i of | E_day[f(x_i with c = v)] - E_ref[f(x_i with c = v)] |

the mean absolute change of a row's expected score when column c's values follow the day's
distribution instead of the reference's (the rows' other columns kept). The expectations run over a
grid: a categorical column's levels (missing as one more), a numeric column's quantiles of both sides
pooled (missing as one more point), each weighed by its share on the day and in the reference. An
unimportant column moves no score, so its impact is about zero however far it drifts; a level swap in
the column the model leans on moves many.

Shares measured on a day of 100 rows move by chance, and so does the impact; what counts is the
impact beyond its no-drift level at the day's and the reference's sizes (found by drawing shares under
no drift through the same predictions). It is in score units (probabilities) and is divided by the
spread of the reference's scores (their standard deviation), so one threshold serves a model whose
scores sit around 0.02 and one whose scores sit around 0.5.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

Predict = Callable[[pd.DataFrame], np.ndarray]  # a profile frame (ml/drift.py) -> the model's scores

GRID = 16  # quantile points of a numeric column
MAX_LEVELS = 40  # the most frequent levels of a categorical column; rarer ones are left out of both sides


def _grid(reference: pd.Series, current: pd.Series, kind: str) -> tuple[list, np.ndarray, np.ndarray]:
    """The grid's values and each side's share of them (missing values are one more point)."""
    if kind == "numeric":
        ref = reference.to_numpy(dtype="float64", na_value=np.nan)
        cur = current.to_numpy(dtype="float64", na_value=np.nan)
        pooled = np.concatenate([ref[~np.isnan(ref)], cur[~np.isnan(cur)]])
        points = np.unique(np.quantile(pooled, (np.arange(GRID) + 0.5) / GRID)) if len(pooled) else np.array([])
        edges = (points[1:] + points[:-1]) / 2

        def shares(values: np.ndarray) -> np.ndarray:
            present = values[~np.isnan(values)]
            counts = np.bincount(np.searchsorted(edges, present), minlength=len(points)).astype("float64")
            return np.append(counts, np.isnan(values).sum()) / max(len(values), 1)

        return [*points.tolist(), np.nan], shares(ref), shares(cur)
    pooled = pd.concat([reference, current], ignore_index=True).astype(object)
    levels = pooled.dropna().value_counts().index[:MAX_LEVELS].tolist()

    def level_shares(values: pd.Series) -> np.ndarray:
        values = values.astype(object)
        counts = values.value_counts()
        return np.array([*(counts.get(v, 0) for v in levels), values.isna().sum()], dtype="float64") / max(
            len(values), 1
        )

    return [*levels, None], level_shares(reference), level_shares(current)


def column_impact(
    predict: Predict,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    column: str,
    kind: str,
    *,
    rows: int = 400,
    rounds: int = 50,
    spread: float = 3.5,
    seed: int = 0,
) -> tuple[float, float]:
    """The mean absolute change of a day row's expected score between the day's and the reference's
    distribution of `column` (score units), on at most `rows` of the day's rows; and its no-drift level.

    The no-drift level is what chance alone gives at these sizes: shares drawn from the pooled shares
    for a day and a reference of these sizes, `rounds` times, through the same predictions; mean +
    `spread` standard deviations (as the column thresholds are found, ml/drift_calibration.py). A day
    of 100 rows moves shares, so scores, by chance more than a day of 10,000 does.
    """
    values, ref_shares, cur_shares = _grid(reference[column], current[column], kind)
    pooled = (ref_shares * len(reference) + cur_shares * len(current)) / (len(reference) + len(current))
    points = np.flatnonzero(pooled > 0)
    if len(points) < 2:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    sample = current
    if len(current) > rows:
        sample = current.iloc[rng.choice(len(current), rows, replace=False)]
    sample = sample.reset_index(drop=True)
    # One stacked frame: the sampled rows once per grid point, predicted in one call.
    stacked = pd.concat([sample] * len(points), ignore_index=True)
    column_values = np.repeat(np.array([values[k] for k in points], dtype=object), len(sample))
    if kind == "numeric":
        stacked[column] = column_values.astype("float64")
    else:
        stacked[column] = pd.Series(column_values, dtype=object).where(pd.notna(column_values), None)
    scores = np.asarray(predict(stacked), dtype="float64").reshape(len(points), len(sample))
    impact = float(np.mean(np.abs((cur_shares - ref_shares)[points] @ scores)))
    shares = pooled[points] / pooled[points].sum()
    day_draws = rng.multinomial(len(current), shares, size=rounds) / len(current)
    reference_draws = rng.multinomial(len(reference), shares, size=rounds) / len(reference)
    null = np.mean(np.abs((day_draws - reference_draws) @ scores), axis=1)
    return impact, float(np.mean(null) + spread * np.std(null))


def score_spread(reference_scores: pd.Series) -> float:
    """What `relative` impacts are measured in: the standard deviation of the reference's scores."""
    return max(float(np.nanstd(reference_scores.to_numpy(dtype="float64"))), 1e-3)
