"""What a retrain learns from: the evaluation days every candidate is judged on, each window's days and
row weights, and which window wins.

A retrain trains one candidate per window of `retraining.windows` (e.g. the latest 28 labelled days
alone, the latest 90 with rows weighed by recency, the days since the episode that asked for the
retrain began) and judges them on the evaluation days: the newest whole labelled days, as many as it
takes to reach `gate.min_rows` rows, which no window trains on. Whole days, because the next nights
are whole days too; the newest, because after a change they are the ones that show it. When the
retrain answers an episode, the evaluation days never reach back before the episode's start while
the days from it hold half of `gate.min_rows`: the days before a change measure the old relation, and
would pick the model that learned it.

The first window listed is the default. Another wins only when it is better than the default on the
evaluation days beyond the noise (a paired bootstrap of the AUC difference, ml/gate.py): with a few
hundred rows, AUCs of models trained on overlapping days differ by noise, and a choice by the point
AUC alone flips between windows from one retrain to the next. The same days are then the rows the
gate compares the winner with the champion on, and the new version's drift reference.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np

from ml.gate import paired_auc_difference, weighted_aucs


def evaluation_days(rows_per_day: Mapping[str, int], min_rows: int, since: str | None = None) -> list[str]:
    """The newest whole days until they hold `min_rows` rows; at least one day is left to train on.

    With `since` (the day an episode began), days before it are left out as long as the days from it on
    hold at least half of `min_rows`: fewer rows of the present relation rather than rows of the old one.
    """
    days = sorted(rows_per_day)
    after = [d for d in days[1:] if since is not None and d >= since]
    stop_at = since if sum(rows_per_day[d] for d in after) * 2 >= min_rows else None
    chosen: list[str] = []
    for day in reversed(days[1:]):
        if stop_at is not None and day < stop_at:
            break
        chosen.insert(0, day)
        if sum(rows_per_day[d] for d in chosen) >= min_rows:
            break
    return chosen


def window_days(training_days: Sequence[str], days: int, since: str | None = None) -> list[str]:
    """The latest `days` of the days a window may train on (those before the evaluation days); with
    `since`, only those from that day on."""
    latest = sorted(training_days)[-days:]
    return [d for d in latest if since is None or d >= since]


def day_weights(days: Sequence[str], half_life_days: float | None) -> dict[str, float]:
    """Each day's row weight: 0.5 ** (its age in days before the newest / half_life_days); 1 without a half-life."""
    if not days:
        return {}
    if half_life_days is None:
        return dict.fromkeys(days, 1.0)
    newest = max(dt.date.fromisoformat(d) for d in days)
    return {d: 0.5 ** ((newest - dt.date.fromisoformat(d)).days / half_life_days) for d in days}


def choose(
    labels: np.ndarray,
    scores: Mapping[str, np.ndarray],
    *,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[str, str, dict[str, float]]:
    """The winning window, why (in words), and each window's AUC on the evaluation rows.

    `scores` holds each window's scores of the evaluation rows, the default (first-listed) window
    first. The default wins unless another is better than it beyond the noise: the lower end of the
    one-sided `confidence` interval of their paired AUC difference is above 0. Of several such, the one
    with the best AUC.
    """
    if not scores:
        raise ValueError("no window was trained")
    y = np.asarray(labels).astype(int)
    names = list(scores)
    default = names[0]
    aucs, better = {}, {}
    for name in names:
        difference = paired_auc_difference(
            y, scores[name], scores[default], resamples=resamples, confidence=confidence, seed=seed
        )
        aucs[name] = float(weighted_aucs(y, np.asarray(scores[name], float), np.ones((1, len(y))))[0])
        if name != default and difference.lower > 0:
            better[name] = difference
    others = ", ".join(f"{name} {aucs[name]:.4f}" for name in names if name != default)
    if not better:
        reason = f"window {default} (the default) with AUC {aucs[default]:.4f} on the evaluation days"
        if others:
            reason += f"; no other window is better beyond the noise ({others})"
        return default, reason, aucs
    best = max(better, key=lambda name: aucs[name])
    reason = (
        f"window {best} with AUC {aucs[best]:.4f} on the evaluation days is better than the default window "
        f"{default} ({aucs[default]:.4f}) beyond the noise: difference {better[best]}"
    )
    rest = ", ".join(f"{name} {aucs[name]:.4f}" for name in names if name not in (best, default))
    return best, reason + (f"; against {rest}" if rest else ""), aucs
