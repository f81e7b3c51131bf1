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

When the raw data's rows are dated (the spec has a timestamp), its dates before the first labelled
day are days of the windows too (`raw_days`): a window of 28 or 90 days reaches back into them
rather than starting at the first labelled day, so an early retrain does not learn from a few days
alone. A window that also takes the raw rows (`raw`) has them already, so its days leave them out.
The `since_episode` window is a candidate only when a collapse asked for the retrain: the relation
changed, so the days before the change are wrong; a drift or a decay does not make them wrong.

The first window listed is the default. Another wins only when it is better than the default on the
evaluation days beyond the noise (a paired bootstrap of the AUC difference, ml/gate.py): with a few
hundred rows, AUCs of models trained on overlapping days differ by noise, and a choice by the point
AUC alone flips between windows from one retrain to the next. The same days are then the rows the
gate compares the winner with the champion on, and the new version's drift reference.

The window is chosen as the model will be used: the new version first scores the night after the
retrain, `choice_gap` days after the newest labelled day (the label delay and that night), so the
windows are also trained without the newest `choice_gap` days of theirs (`lagged_windows`) and those
models pick the window on the evaluation days (`choose_window`); the winning window's model trained on
its full days is the candidate the gate judges. After a collapse, no gap: the newest days are the
ones that show the new relation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ml.gate import paired_auc_difference, weighted_aucs
from ml.params import TrainingWindow
from ml.spec import DatasetSpec


class WindowDays(BaseModel):
    """One window a candidate is trained on: its days (and whether the raw rows join them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    days: list[str]  # labelled days, and the raw data's days (`raw_days`) the window reaches back into
    raw: bool
    half_life_days: float | None = None  # rows weighed by recency (ml/windows.py day_weights)
    since: str | None = None  # the episode's start the window's days begin at
    raw_days: int = 0  # how many of `days` are the raw data's days (their raw rows)

    def describe(self) -> str:
        span = f"{len(self.days)} labelled days {self.days[0]}..{self.days[-1]}" if self.days else "no labelled day"
        if self.raw_days:
            span = f"{len(self.days)} days {self.days[0]}..{self.days[-1]} ({self.raw_days} of them the raw data's)"
        if self.since:
            span += f" (from the episode's start {self.since})"
        if self.half_life_days is not None:
            span += f", rows weighed by recency (half-life {self.half_life_days:g} days)"
        return ("raw data + " if self.raw else "") + span


def row_dates(rows: pd.DataFrame, spec: DatasetSpec) -> pd.Series | None:
    """Each row's date (YYYY-MM-DD) by the spec's timestamp, None for an unreadable one; None without a timestamp."""
    if spec.timestamp is None or spec.timestamp.column not in rows.columns:
        return None
    when = pd.to_datetime(rows[spec.timestamp.column], errors="coerce")
    return when.dt.strftime("%Y-%m-%d").where(when.notna(), None)


def raw_days(raw_dates: Iterable[str | None], labelled: Sequence[str], loaded: Sequence[str]) -> list[str]:
    """The raw data's dates that are days of the windows: those before every labelled day, when the
    retrain's labelled days (`loaded`) begin at the first of them (else labelled days it did not load
    would lie between)."""
    if not loaded or min(labelled, default=min(loaded)) < min(loaded):
        return []
    return sorted({d for d in raw_dates if d is not None and d < min(loaded)})


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


def candidate_windows(
    configured: Sequence[TrainingWindow],
    training_days: Sequence[str],
    episode_start: str | None = None,
    raw_days: Sequence[str] = (),
    relation_changed: bool = False,
) -> list[WindowDays]:
    """The windows of `retraining.windows` over the raw days (`raw_days`) and the labelled days before
    the evaluation (`training_days`); a window with the same days and weights as one before it is
    trained once (under the first name). A raw window's days leave the raw days out (it has every raw
    row). A `since_episode` window takes the days from `episode_start` on, and is a candidate only
    when the relation changed (a collapse asked for the retrain), there is an episode and such days."""
    raw_set = set(raw_days)
    days_of = sorted(raw_set) + sorted(d for d in training_days if d not in raw_set)
    windows: list[WindowDays] = []
    for window in configured:
        if window.since_episode and (episode_start is None or not relation_changed):
            continue
        since = episode_start if window.since_episode else None
        days = window_days(days_of, window.days, since)
        if window.raw:
            days = [d for d in days if d not in raw_set]
        if not days and (not window.raw or window.since_episode):
            continue
        half_life = window.half_life_days if len(days) > 1 else None  # one day has nothing to weigh
        if any(w.days == days and w.raw == window.raw and w.half_life_days == half_life for w in windows):
            continue
        from_raw = sum(d in raw_set for d in days)
        windows.append(
            WindowDays(
                name=window.name, days=days, raw=window.raw, half_life_days=half_life, since=since, raw_days=from_raw
            )
        )
    return windows


def choice_gap(newest_labelled: str | None, requested_on: str | None, relation_changed: bool) -> int:
    """How many of the newest labelled days the models that choose the window leave out: the days from
    the newest labelled day to the night the new version first scores, the one after `requested_on`
    (the night the retrain was asked on): the label delay and that night. None after a collapse
    (`relation_changed`: the newest days are the ones that show the new relation), nor without
    `requested_on` (a retrain asked for by hand) or a labelled day."""
    if relation_changed or requested_on is None or newest_labelled is None:
        return 0
    return max(0, (dt.date.fromisoformat(requested_on) - dt.date.fromisoformat(newest_labelled)).days + 1)


def lagged_windows(
    configured: Sequence[TrainingWindow],
    windows: Sequence[WindowDays],
    training_days: Sequence[str],
    gap: int,
    episode_start: str | None = None,
    raw_days: Sequence[str] = (),
) -> list[WindowDays]:
    """The windows as they were `gap` labelled days earlier (the newest `gap` training days left out),
    the ones that choose the window; none without a gap, when no labelled day would be left, or when
    the default (first) window is not among them. Only windows of `windows`, under their names."""
    raw_set = set(raw_days)
    labelled = sorted(d for d in training_days if d not in raw_set)
    if gap <= 0 or len(labelled) <= gap:
        return []
    names = {w.name for w in windows}
    lagged = [w for w in candidate_windows(configured, labelled[:-gap], episode_start, raw_days) if w.name in names]
    return lagged if lagged and lagged[0].name == windows[0].name else []


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
    aucs, better = window_aucs(y, scores), {}
    for name in names[1:]:
        difference = paired_auc_difference(
            y, scores[name], scores[default], resamples=resamples, confidence=confidence, seed=seed
        )
        if difference.lower > 0:
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


def window_aucs(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Each window's AUC on the evaluation rows."""
    y = np.asarray(labels).astype(int)
    ones = np.ones((1, len(y)))
    return {name: float(weighted_aucs(y, np.asarray(score, float), ones)[0]) for name, score in scores.items()}


def choose_window(
    labels: np.ndarray,
    scores: Mapping[str, np.ndarray],
    lagged_scores: Mapping[str, np.ndarray] | None = None,
    gap: int = 0,
    *,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[str, str, dict[str, float]]:
    """The winning window, why, and each window's AUC on the evaluation rows (its model on its full days).

    With `lagged_scores` (the windows' models trained without their newest `gap` days, the default
    window first), those pick the window by `choose`, as the new version will be used: `gap` days
    after its newest labelled day. Without, the full days' models pick it.
    """
    if not lagged_scores:
        return choose(labels, scores, confidence=confidence, resamples=resamples, seed=seed)
    chosen, why, _ = choose(labels, lagged_scores, confidence=confidence, resamples=resamples, seed=seed)
    aucs = window_aucs(labels, scores)  # the full days' models: their AUCs only, no second bootstrap
    why = (
        f"chosen by the windows' models trained without their newest {gap} days (the new version is used "
        f"{gap} days after its newest labelled day): {why}; on its full days the window has AUC {aucs[chosen]:.4f}"
    )
    return chosen, why, aucs
