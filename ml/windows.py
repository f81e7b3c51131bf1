"""What a retrain learns from: the evaluation days every candidate is judged on, and each window's days.

A retrain trains one candidate per window of `retraining.windows` (e.g. the latest 28 labelled days
alone, the latest 90, the raw data plus the latest 90) and keeps the one with the best AUC on the
evaluation days: the newest whole labelled days, as many as it takes to reach `gate.min_rows` rows,
which no window trains on. Whole days, because the next nights are whole days too; the newest,
because after a change they are the ones that show it. The same days are then the rows the gate
compares the winner with the champion on, and the new version's drift reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def evaluation_days(rows_per_day: Mapping[str, int], min_rows: int) -> list[str]:
    """The newest whole days until they hold `min_rows` rows; at least one day is left to train on."""
    days = sorted(rows_per_day)
    chosen: list[str] = []
    for day in reversed(days[1:]):
        chosen.insert(0, day)
        if sum(rows_per_day[d] for d in chosen) >= min_rows:
            break
    return chosen


def window_days(training_days: Sequence[str], days: int) -> list[str]:
    """The latest `days` of the days a window may train on (those before the evaluation days)."""
    return sorted(training_days)[-days:]


def choose(aucs: Mapping[str, float]) -> tuple[str, str]:
    """The window with the best evaluation AUC (the first listed on a tie), and why, in words."""
    if not aucs:
        raise ValueError("no window was trained")
    best = max(aucs, key=lambda name: (aucs[name], -list(aucs).index(name)))
    others = ", ".join(f"{name} {auc:.4f}" for name, auc in aucs.items() if name != best)
    reason = f"window {best} has the best AUC on the evaluation days, {aucs[best]:.4f}"
    return best, reason + (f" (against {others})" if others else " (the only window)")
