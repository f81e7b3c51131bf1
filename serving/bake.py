"""The bake decision: is the canary (or shadow) as good as the champion on the requests both served?

From the request log of the bake period (serving/request_log.py: one row per arm per request), the
canary's arm is compared with the champion's on what an endpoint can measure by itself, and on
labels where they have arrived:

- latency: the canary's p99 must stay under `max_p99_latency_ms` and under `max_p99_ratio` times
  the champion's p99 over the same period;
- errors: its share of 5xx answers must stay under `max_error_rate`;
- score drift: its scores against the champion's on the same period, by the project's drift test
  (normed Wasserstein distance, threshold calibrated on the champion's scores at the canary's size:
  ml/drift_calibration.py), or a fixed `max_score_drift`;
- performance: with at least `min_labelled` labelled requests per arm, its ROC AUC may trail the
  champion's by at most `max_auc_drop`.

`wait` until each arm has `min_requests` requests, except that an arm with no request at all while
the champion has `min_requests` and the canary's share should have brought at least
`MIN_EXPECTED_UNSERVED` is rolled back: the endpoint is not serving the challenger (it did not load
there), and waiting would wait forever. Then any breach is a `rollback` at once (a bad
canary should not serve until the bake ends), and a clean canary is promoted once `bake_minutes`
have passed. Every reason names the figure, its value and the threshold. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ml.drift_calibration import calibrate_column, score
from ml.params import RolloutSection
from ml.sample import id_hashes, smallest

CHAMPION_ARM = "champion"
LABEL = "label"  # 0/1 truth column of the labels frame given to `decide`
Outcome = Literal["wait", "promote", "rollback"]
# Scores compared for drift, per arm: a seeded sample by request id beyond this (as the drift report
# samples its days), so a tick costs the same whatever the traffic.
MAX_DRIFT_ROWS = 20_000
# An arm with 0 requests where at least this many were expected is not served at all: the chance that
# a working canary draws none of them by its ids' hashes is below e**-20.
MIN_EXPECTED_UNSERVED = 20
REQUIRED = ("request_id", "received_at", "arm", "model_version", "latency_ms", "status", "score")


class BakeError(ValueError):
    """The request log or the labels cannot be judged; the message names the column at fault."""


@dataclass(frozen=True)
class ArmFigures:
    arm: str
    model_version: int | None
    requests: int
    p99_ms: float | None
    error_rate: float | None
    labelled: int = 0
    roc_auc: float | None = None


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: list[str]  # why (rollback: every breach; wait: what is missing; promote: what passed)
    champion: ArmFigures
    canary: ArmFigures
    score_drift: float | None = None
    score_drift_threshold: float | None = None
    baked_minutes: float = 0.0

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason}


def _check(requests: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in requests.columns]
    if missing:
        raise BakeError(f"the request log lacks columns {missing} (serving/request_log.py writes them)")


def _p99(latencies: pd.Series) -> float | None:
    return float(np.percentile(latencies.to_numpy(dtype="float64"), 99)) if len(latencies) else None


def _auc(rows: pd.DataFrame, labels: pd.DataFrame | None, id_column: str | None) -> tuple[int, float | None]:
    if labels is None or id_column is None or rows.empty:
        return 0, None
    if id_column not in rows.columns:
        raise BakeError(f"the request log has no id column {id_column!r}, so labels cannot be joined")
    joined = rows[rows["score"].notna()].merge(labels[[id_column, LABEL]], on=id_column, how="inner")
    truth = joined[LABEL].to_numpy(dtype="int64")
    if len(joined) == 0 or truth.min() == truth.max():  # one class: no AUC
        return len(joined), None
    return len(joined), float(roc_auc_score(truth, joined["score"].to_numpy(dtype="float64")))


def _drift_sample(rows: pd.DataFrame, seed: int) -> pd.Series:
    scored = rows[rows["score"].notna()]
    if len(scored) > MAX_DRIFT_ROWS:
        keep = smallest(id_hashes(scored["request_id"].astype(str), seed), np.arange(len(scored)), MAX_DRIFT_ROWS)
        scored = scored.iloc[keep]
    return scored["score"].reset_index(drop=True)


def _figures(rows: pd.DataFrame, arm: str, labels: pd.DataFrame | None, id_column: str | None) -> ArmFigures:
    versions = rows["model_version"].dropna().unique()
    labelled, auc = _auc(rows, labels, id_column)
    return ArmFigures(
        arm=arm,
        model_version=int(versions[0]) if len(versions) == 1 else None,
        requests=len(rows),
        p99_ms=_p99(rows["latency_ms"]),
        error_rate=float((rows["status"] >= 500).mean()) if len(rows) else None,
        labelled=labelled,
        roc_auc=auc,
    )


def decide(
    requests: pd.DataFrame,
    *,
    canary_arm: Literal["canary", "shadow"],
    challenger_version: int,
    since: dt.datetime,
    now: dt.datetime,
    settings: RolloutSection,
    champion_version: int | None = None,
    labels: pd.DataFrame | None = None,
    id_column: str | None = None,
    seed: int = 0,
    canary_percent: float | None = None,
) -> Decision:
    """The bake's outcome over the requests received from `since` to `now` (see the module docstring).

    `labels`: the truth of the labelled requests, `id_column` + `label` (0/1), when any have arrived.
    `canary_percent`: a canary's share of the requests (a shadow scores them all).
    """
    _check(requests)
    period = requests[(requests["received_at"] >= pd.Timestamp(since)) & (requests["received_at"] <= pd.Timestamp(now))]
    canary_rows = period[(period["arm"] == canary_arm) & (period["model_version"] == challenger_version)]
    champion_rows = period[period["arm"] == CHAMPION_ARM]
    if champion_version is not None:
        champion_rows = champion_rows[champion_rows["model_version"] == champion_version]
    champion = _figures(champion_rows, CHAMPION_ARM, labels, id_column)
    canary = _figures(canary_rows, canary_arm, labels, id_column)
    baked = max((now - since).total_seconds() / 60.0, 0.0)
    s = settings

    share = 1.0 if canary_arm == "shadow" else (canary_percent or 0.0) / max(100.0 - (canary_percent or 0.0), 1e-9)
    expected = champion.requests * share
    if canary.requests == 0 and champion.requests >= s.min_requests and expected >= MIN_EXPECTED_UNSERVED:
        unserved = (
            f"the {canary_arm} served none of its share: 0 requests while the champion had {champion.requests} "
            f"(about {expected:.0f} expected): the endpoint is not serving v{challenger_version} (it did not load "
            "there; see the endpoint's /health)"
        )
        return Decision("rollback", [unserved], champion, canary, baked_minutes=baked)
    short = [f.arm for f in (champion, canary) if f.requests < s.min_requests]
    if short:
        counts = ", ".join(f"{f.arm} {f.requests}" for f in (champion, canary))
        return Decision(
            "wait",
            [f"too few requests to judge ({counts}; {s.min_requests} per arm needed)"],
            champion,
            canary,
            baked_minutes=baked,
        )

    breaches, passed = [], []
    p99, base = canary.p99_ms, champion.p99_ms
    if p99 > s.max_p99_latency_ms:
        breaches.append(f"latency p99 {p99:.1f} ms > max_p99_latency_ms {s.max_p99_latency_ms:g} ms")
    ratio = p99 / base if base and base > 0 else float("inf") if p99 > 0 else 1.0
    if ratio > s.max_p99_ratio:
        breaches.append(
            f"latency p99 {p99:.1f} ms is {ratio:.2f}x the champion's {base:.1f} ms > max_p99_ratio {s.max_p99_ratio:g}"
        )
    passed.append(f"p99 {p99:.1f} ms ({ratio:.2f}x the champion's)")
    if canary.error_rate > s.max_error_rate:
        breaches.append(f"error rate {canary.error_rate:.2%} > max_error_rate {s.max_error_rate:.2%}")
    passed.append(f"error rate {canary.error_rate:.2%}")

    drift, threshold = None, None
    canary_scores, champion_scores = _drift_sample(canary_rows, seed), _drift_sample(champion_rows, seed)
    if len(canary_scores) and len(champion_scores) >= 4:
        drift = score(champion_scores, canary_scores, "numeric")
        if s.max_score_drift == "auto":
            threshold = calibrate_column(champion_scores, "numeric", len(canary_scores), seed=seed).threshold
            how = "calibrated on the champion's scores"
        else:
            threshold, how = float(s.max_score_drift), "max_score_drift"
        if drift > threshold:
            breaches.append(f"score drift {drift:.3f} (normed Wasserstein vs the champion) > {threshold:.3f} ({how})")
        passed.append(f"score drift {drift:.3f} <= {threshold:.3f}")

    enough = canary.labelled >= s.min_labelled and champion.labelled >= s.min_labelled
    if enough and canary.roc_auc is not None and champion.roc_auc is not None:
        drop = champion.roc_auc - canary.roc_auc
        if drop > s.max_auc_drop:
            breaches.append(
                f"ROC AUC {canary.roc_auc:.3f} on {canary.labelled} labelled requests trails the champion's "
                f"{champion.roc_auc:.3f} by {drop:.3f} > max_auc_drop {s.max_auc_drop:g}"
            )
        passed.append(f"AUC {canary.roc_auc:.3f} vs {champion.roc_auc:.3f}")

    result = dict(champion=champion, canary=canary, score_drift=drift, score_drift_threshold=threshold)
    if breaches:
        return Decision("rollback", breaches, baked_minutes=baked, **result)
    if baked < s.bake_minutes:
        return Decision(
            "wait",
            [f"baking: {baked:.1f} of {s.bake_minutes:g} minutes, clean so far ({', '.join(passed)})"],
            baked_minutes=baked,
            **result,
        )
    return Decision("promote", [f"clean after {baked:.1f} minutes: {', '.join(passed)}"], baked_minutes=baked, **result)
