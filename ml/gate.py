"""The evaluation gate's rule: good enough in absolute terms AND not worse than the champion beyond noise.

The candidate's holdout AUC must reach the bar (`gate.min_auc`, or with `auto` the best single
column's AUC on the same holdout plus a margin: ml/baseline.py), unless it is better than the serving
champion beyond the noise (then keeping the champion would serve the worse of the two). Candidate and champion are scored on
the same rows (with labelled days in the training set: the newest whole labelled days, which no
candidate trained on), and the difference of their AUCs is judged by a paired bootstrap: the same
resampled rows score both, so what the two models share (a hard day, a rare class) cancels out. The
candidate is blocked only when it is worse beyond that noise: when even the upper end of the
one-sided `gate.confidence` interval of (candidate - champion) lies below `-gate.max_auc_drop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.params import GateSection


@dataclass(frozen=True)
class PairedDifference:
    """AUC(candidate) - AUC(champion) on the same rows, and the bootstrap's bounds of it."""

    difference: float
    lower: float
    upper: float
    confidence: float
    rows: int
    resamples: int

    def __str__(self) -> str:
        return (
            f"{self.difference:+.4f} (one-sided {self.confidence:.0%} bounds {self.lower:+.4f}..{self.upper:+.4f}, "
            f"paired bootstrap of {self.rows} rows)"
        )


def weighted_aucs(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of `scores` under each row of `weights` (resamples x rows; a row's count in the resample).

    The Mann-Whitney count with ties as halves, taken over the distinct scores at once for every
    resample, so a thousand resamples cost a few array passes instead of a thousand sorts.
    """
    order = np.argsort(scores, kind="stable")
    ranked, y, w = scores[order], labels[order].astype(bool), weights[:, order].astype(float)
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    positives = np.add.reduceat(np.where(y, w, 0.0), starts, axis=1)
    negatives = np.add.reduceat(np.where(y, 0.0, w), starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    return (positives * (below + 0.5 * negatives)).sum(axis=1) / pairs


def paired_auc_difference(
    labels: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """The candidate's AUC minus the champion's on the same rows, with a stratified paired bootstrap.

    Positives and negatives are resampled apart (each class keeps its count), and each resample
    scores both models, so the interval measures the noise of the difference, not of either AUC.
    """
    y = np.asarray(labels).astype(int)
    candidate, champion = np.asarray(candidate, float), np.asarray(champion, float)
    if not len(y) == len(candidate) == len(champion):
        raise ValueError(f"{len(y)} labels, {len(candidate)} candidate and {len(champion)} champion scores")
    rows_of = [np.flatnonzero(y == c) for c in (0, 1)]
    if min(len(r) for r in rows_of) == 0:
        raise ValueError(f"the {len(y)} compared rows hold one class only; an AUC needs both")
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, len(y)))
    for rows in rows_of:
        weights[:, rows] = rng.multinomial(len(rows), np.full(len(rows), 1 / len(rows)), size=resamples)
    ones = np.ones((1, len(y)))
    observed = float(weighted_aucs(y, candidate, ones)[0] - weighted_aucs(y, champion, ones)[0])
    differences = weighted_aucs(y, candidate, weights) - weighted_aucs(y, champion, weights)
    lower, upper = np.quantile(differences, [1 - confidence, confidence])
    return PairedDifference(observed, float(lower), float(upper), confidence, len(y), resamples)


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
    difference: PairedDifference | None = None  # the paired bootstrap of candidate - champion on those rows


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
    difference: PairedDifference | None = None,
) -> GateDecision:
    """The verdict. With a paired `difference` the champion test is by evidence (its upper bound);
    without one, by the point difference against the tolerance."""
    failures = []
    basis = f" ({bar})" if bar else ""
    versus = candidate_auc if candidate_compared_auc is None else candidate_compared_auc
    # Below the bar but better than the serving champion beyond the noise: keeping the champion would
    # serve the worse of the two. A point AUC at least the champion's is not enough: on a few days a
    # model of five days can edge past one of thirty by chance, and then serve the next week worse.
    replaces_worse = champion_auc is not None and difference is not None and difference.lower > 0
    if candidate_auc < min_auc and not replaces_worse:
        failures.append(f"AUC {candidate_auc:.4f} is below the minimum {min_auc:.4f}{basis}")
    if champion_auc is not None:
        if difference is not None:
            if difference.upper < -max_auc_drop:
                failures.append(
                    f"AUC {versus:.4f} is worse than champion v{champion_version} ({champion_auc:.4f}) beyond the "
                    f"noise: difference {difference}, entirely below -{max_auc_drop:.4f} (on the {compared_on})"
                )
        elif versus < champion_auc - max_auc_drop:
            failures.append(
                f"AUC {versus:.4f} is worse than champion v{champion_version} ({champion_auc:.4f}) "
                f"by {champion_auc - versus:.4f}, more than the tolerance {max_auc_drop:.4f} (on the {compared_on})"
            )
    if failures:
        reason = "blocked: " + "; ".join(failures)
    elif champion_auc is None:
        reason = f"passed: AUC {candidate_auc:.4f} >= minimum {min_auc:.4f}{basis}; there is no champion yet"
    elif candidate_auc < min_auc:
        reason = (
            f"passed: AUC {candidate_auc:.4f} is below the minimum {min_auc:.4f}{basis}, but {versus:.4f} on the "
            f"{compared_on} is better than champion v{champion_version} ({champion_auc:.4f}), the model serving, "
            f"beyond the noise: difference {difference}"
        )
    elif difference is not None:
        reason = (
            f"passed: AUC {candidate_auc:.4f} >= minimum {min_auc:.4f}{basis}, and {versus:.4f} on the {compared_on} "
            f"is not worse than champion v{champion_version} ({champion_auc:.4f}) beyond the noise: difference "
            f"{difference}"
        )
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
        difference=difference,
    )


def versus_champion(
    labels: np.ndarray,
    candidate_scores: np.ndarray,
    champion_scores: np.ndarray,
    gate: GateSection,
    *,
    candidate_auc: float,
    min_auc: float,
    champion_version: int,
    bar: str = "",
    compared_on: str = "holdout",
) -> GateDecision:
    """The verdict for a candidate scored beside the champion on the same labelled rows."""
    from sklearn.metrics import roc_auc_score

    return decide(
        candidate_auc,
        min_auc=min_auc,
        max_auc_drop=gate.max_auc_drop,
        champion_version=champion_version,
        champion_auc=float(roc_auc_score(labels, champion_scores)),
        bar=bar,
        compared_on=compared_on,
        candidate_compared_auc=candidate_auc,
        difference=paired_auc_difference(
            labels,
            candidate_scores,
            champion_scores,
            resamples=gate.resamples,
            confidence=gate.confidence,
            seed=gate.seed,
        ),
    )
