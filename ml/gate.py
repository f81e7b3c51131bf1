"""The evaluation gate's rule: good enough in absolute terms AND not worse than the champion.

Both AUCs are measured on the candidate's holdout, so the comparison is on the same rows.
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


def decide(
    candidate_auc: float,
    *,
    min_auc: float,
    max_auc_drop: float,
    champion_version: int | None = None,
    champion_auc: float | None = None,
) -> GateDecision:
    failures = []
    if candidate_auc < min_auc:
        failures.append(f"AUC {candidate_auc:.4f} is below the minimum {min_auc:.4f}")
    if champion_auc is not None and candidate_auc < champion_auc - max_auc_drop:
        failures.append(
            f"AUC {candidate_auc:.4f} is worse than champion v{champion_version} ({champion_auc:.4f}) "
            f"by {champion_auc - candidate_auc:.4f}, more than the tolerance {max_auc_drop:.4f}"
        )
    if failures:
        reason = "blocked: " + "; ".join(failures)
    elif champion_auc is None:
        reason = f"passed: AUC {candidate_auc:.4f} >= minimum {min_auc:.4f}; there is no champion yet"
    else:
        reason = (
            f"passed: AUC {candidate_auc:.4f} >= minimum {min_auc:.4f} and within {max_auc_drop:.4f} of "
            f"champion v{champion_version} ({champion_auc:.4f}) on the same holdout"
        )
    return GateDecision(
        passed=not failures,
        reason=reason,
        candidate_auc=candidate_auc,
        min_auc=min_auc,
        max_auc_drop=max_auc_drop,
        champion_version=champion_version,
        champion_auc=champion_auc,
    )
