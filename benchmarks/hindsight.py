"""The best any trigger could do with a given number of retrains: the limit beside the project's row.

The daily calendar trains a model every night that brings labels. Scored ahead (each model on every
day from its first on; benchmarks/baselines.py `replay_policy(..., ahead=True)`), those models answer
"what if the only retrains had been on nights s1 < s2 < ...". A dynamic programme picks, with
hindsight, the nights that give the best mean daily AUC for a number of retrains: no trigger that
retrains as often, on the same training windows, can do better. It tells how far a goal is reachable
at all, and how far the project's trigger is from a perfect one.
"""

from __future__ import annotations

import numpy as np


def schedule_aucs(ahead: dict[int, list[float]], nights: int, starts: list[int]) -> list[float]:
    """Each night's AUC when the model first trained (night 0) serves until the first of `starts`, and
    so on: `ahead[s][k]` is the AUC on night s + k of the model that started serving on night s."""
    serving = [0, *sorted(starts)]
    unknown = [s for s in serving if s not in ahead]
    if unknown:
        raise ValueError(f"no model started serving on night(s) {unknown}; models start on {sorted(ahead)}")
    bounds = [*serving[1:], nights]
    return [auc for start, end in zip(serving, bounds, strict=True) for auc in ahead[start][: end - start]]


def best_schedule(ahead: dict[int, list[float]], nights: int, retrains: int) -> tuple[float, list[int]]:
    """The best mean daily AUC over `nights` with at most `retrains` switches, and the nights they fall on.

    best[j][s]: the best total AUC of nights s.. when the model of night s serves from s and j more
    switches are allowed. O(retrains * models^2)."""
    if 0 not in ahead:
        raise ValueError("the model that serves from night 0 must be scored ahead")
    if retrains < 0:
        raise ValueError(f"retrains must be >= 0, not {retrains}")
    starts = sorted(s for s in ahead if 0 <= s < nights)
    for s in starts:
        if len(ahead[s]) < nights - s:
            raise ValueError(f"the model of night {s} is scored on {len(ahead[s])} nights, not {nights - s}")
    # cumulative[s][k]: the model of night s, summed over nights s .. s + k - 1
    cumulative = {s: np.concatenate([[0.0], np.cumsum(ahead[s][: nights - s])]) for s in starts}
    best = {s: (cumulative[s][-1], []) for s in starts}  # no switch left
    for _ in range(retrains):
        nxt = {}
        for s in starts:
            total, chosen = cumulative[s][-1], []
            for later in starts:
                if later <= s:
                    continue
                candidate = cumulative[s][later - s] + best[later][0]
                if candidate > total:
                    total, chosen = candidate, [later, *best[later][1]]
            nxt[s] = (total, chosen)
        best = nxt
    total, chosen = best[0]
    return float(total / nights), chosen
