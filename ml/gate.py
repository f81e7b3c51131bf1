"""The evaluation gate's rule: good enough in absolute terms AND not worse than the champion.

The candidate's holdout AUC must reach the bar (`gate.min_auc`, or with `auto` the best single
column's AUC on the same holdout plus a margin: ml/baseline.py). Candidate and champion are compared
on the same rows: the recent days' holdout when the training set has recent days (the data the next
nights will look like), the whole holdout otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    candidate_auc: float
    min_auc: float
    max_auc_drop: float
    champion_version: int | None = None
    champion_auc: float | None = None
    bar: str = ""  # where min_auc came from, in words
    compared_on: str = "holdout"
    candidate_compared_auc: float | None = None  # the candidate's AUC on the rows compared with the champion


def decide(
    candidate_auc: float,
    *,
    min_auc: float,
    max_auc_drop: float,
    champion_version: int | None = None,
    champion_auc: float | None = None,
    bar: str = "",
    compared_on: str = "holdout",
    candidate_compared_auc: float | None = None,
) -> GateDecision:
    failures = []
    basis = f" ({bar})" if bar else ""
    versus = candidate_auc if candidate_compared_auc is None else candidate_compared_auc
    if candidate_auc < min_auc:
        failures.append(f"AUC {candidate_auc:.4f} is below the minimum {min_auc:.4f}{basis}")
    if champion_auc is not None and versus < champion_auc - max_auc_drop:
        failures.append(
            f"AUC {versus:.4f} is worse than champion v{champion_version} ({champion_auc:.4f}) "
            f"by {champion_auc - versus:.4f}, more than the tolerance {max_auc_drop:.4f} (on the {compared_on})"
        )
    if failures:
        reason = "blocked: " + "; ".join(failures)
    elif champion_auc is None:
        reason = f"passed: AUC {candidate_auc:.4f} >= minimum {min_auc:.4f}{basis}; there is no champion yet"
    else:
        reason = (
            f"passed: AUC {candidate_auc:.4f} >= minimum {min_auc:.4f}{basis}, and {versus:.4f} on the "
            f"{compared_on} is within {max_auc_drop:.4f} of champion v{champion_version} ({champion_auc:.4f})"
        )
    return GateDecision(
        passed=not failures,
        reason=reason,
        candidate_auc=candidate_auc,
        min_auc=min_auc,
        max_auc_drop=max_auc_drop,
        champion_version=champion_version,
        champion_auc=champion_auc,
        bar=bar,
        compared_on=compared_on,
        candidate_compared_auc=candidate_compared_auc,
    )
