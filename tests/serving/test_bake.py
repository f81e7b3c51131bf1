"""The bake decision on request logs made to order: each outcome, and the figure each reason names."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml.params import RolloutSection
from serving.bake import BakeError, decide

SINCE = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
SETTINGS = RolloutSection(min_requests=200, bake_minutes=30, min_labelled=100)


def arm_rows(arm: str, version: int, n: int, *, latency=5.0, errors=0.0, shift=0.0, seed=0, start=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    status = np.where(rng.random(n) < errors, 500, 200)
    scores = np.clip(rng.beta(2, 5, n) + shift, 0, 1)
    return pd.DataFrame(
        {
            "request_id": [f"r{start + i}" for i in range(n)],
            "received_at": pd.Timestamp(SINCE) + pd.to_timedelta(np.linspace(1, 300, n), unit="s"),
            "arm": arm,
            "model_version": np.int64(version),
            "manifest_sha256": f"sha{version}",
            "latency_ms": rng.gamma(4, latency / 4, n),
            "status": status.astype("int16"),
            "score": np.where(status == 200, scores, np.nan),
            "served": arm != "shadow",
            "customer_id": [f"C{start + i:07d}" for i in range(n)],
        }
    )


def log(canary: pd.DataFrame, champion_n: int = 1800) -> pd.DataFrame:
    return pd.concat([arm_rows("champion", 1, champion_n, seed=1, start=10_000), canary], ignore_index=True)


def run(requests, minutes=45.0, **kwargs):
    return decide(
        requests,
        canary_arm=kwargs.pop("canary_arm", "canary"),
        challenger_version=2,
        since=SINCE,
        now=SINCE + dt.timedelta(minutes=minutes),
        settings=kwargs.pop("settings", SETTINGS),
        champion_version=1,
        **kwargs,
    )


def test_a_clean_canary_is_promoted_after_the_bake():
    decision = run(log(arm_rows("canary", 2, 300, seed=2)))
    assert decision.outcome == "promote", decision.reason
    assert decision.canary.requests == 300 and decision.champion.requests == 1800
    assert decision.score_drift is not None and decision.score_drift <= decision.score_drift_threshold


def test_a_clean_canary_waits_until_the_bake_is_over():
    decision = run(log(arm_rows("canary", 2, 300, seed=2)), minutes=10)
    assert decision.outcome == "wait" and "baking: 10.0 of 30 minutes" in decision.reason


def test_too_few_requests_wait_whatever_the_figures():
    decision = run(log(arm_rows("canary", 2, 50, latency=500.0, errors=0.5)))
    assert decision.outcome == "wait"
    assert "too few requests" in decision.reason and "canary 50" in decision.reason


def test_a_slow_canary_is_rolled_back_with_its_latency():
    decision = run(log(arm_rows("canary", 2, 300, latency=60.0, seed=2)), minutes=5)  # before the bake ends
    assert decision.outcome == "rollback"
    assert any("latency p99" in r and "max_p99_ratio 1.5" in r for r in decision.reasons), decision.reasons
    assert decision.canary.p99_ms > 1.5 * decision.champion.p99_ms


def test_a_canary_over_the_absolute_latency_bound_is_rolled_back():
    settings = RolloutSection(min_requests=200, max_p99_latency_ms=8.0, max_p99_ratio=100)
    decision = run(log(arm_rows("canary", 2, 300, seed=2)), settings=settings)
    assert decision.outcome == "rollback" and "max_p99_latency_ms 8 ms" in decision.reason


def test_shifted_scores_are_rolled_back_with_a_drift_reason():
    decision = run(log(arm_rows("canary", 2, 300, shift=0.25, seed=2)))
    assert decision.outcome == "rollback"
    assert [r for r in decision.reasons if r.startswith("score drift")], decision.reasons
    assert decision.score_drift > decision.score_drift_threshold


def test_a_fixed_drift_bound_is_used_when_given():
    settings = RolloutSection(min_requests=200, max_score_drift=5.0)
    assert run(log(arm_rows("canary", 2, 300, shift=0.25, seed=2)), settings=settings).outcome == "promote"


def test_errors_are_rolled_back_with_the_error_rate():
    decision = run(log(arm_rows("canary", 2, 400, errors=0.05, seed=2)))
    assert decision.outcome == "rollback"
    assert any(r.startswith("error rate") and "max_error_rate 1.00%" in r for r in decision.reasons)


def test_a_worse_auc_on_labelled_requests_is_rolled_back():
    champion, canary = arm_rows("champion", 1, 1800, seed=1, start=10_000), arm_rows("canary", 2, 400, seed=2)
    rng = np.random.default_rng(3)
    # The champion's scores predict the truth; the canary's are unrelated to it.
    truth_champion = (rng.random(len(champion)) < champion["score"]).astype(int)
    truth_canary = (rng.random(len(canary)) < 0.3).astype(int)
    labels = pd.DataFrame(
        {"customer_id": [*champion["customer_id"], *canary["customer_id"]], "label": [*truth_champion, *truth_canary]}
    )
    requests = pd.concat([champion, canary], ignore_index=True)
    decision = run(requests, labels=labels, id_column="customer_id")
    assert decision.outcome == "rollback" and "ROC AUC" in decision.reason and "max_auc_drop 0.02" in decision.reason
    assert decision.canary.labelled == 400 and decision.champion.roc_auc > decision.canary.roc_auc


def test_only_the_challengers_rows_of_the_bake_period_count():
    old = arm_rows("canary", 2, 300, latency=90.0, seed=4, start=50_000)
    old["received_at"] -= pd.Timedelta(hours=2)  # before `since`: a previous rollout
    other = arm_rows("canary", 3, 300, latency=90.0, seed=5, start=60_000)  # another version
    decision = run(pd.concat([log(arm_rows("canary", 2, 300, seed=2)), old, other], ignore_index=True))
    assert decision.outcome == "promote" and decision.canary.requests == 300


def test_a_shadow_is_judged_on_its_own_arm():
    shadow = arm_rows("shadow", 2, 1800, seed=1, start=10_000)  # the same requests as the champion's
    assert run(log(shadow), canary_arm="shadow").outcome == "promote"


def test_a_log_without_a_column_is_named():
    with pytest.raises(BakeError, match="latency_ms"):
        run(log(arm_rows("canary", 2, 300)).drop(columns="latency_ms"))


def test_a_canary_the_endpoint_does_not_serve_is_rolled_back_not_awaited_forever():
    nothing = arm_rows("canary", 2, 0)
    decision = run(log(nothing, champion_n=400), canary_percent=10.0)
    assert decision.outcome == "rollback" and "served none of its share" in decision.reason
    assert "about 44 expected" in decision.reason and "not serving v2" in decision.reason
    assert run(log(arm_rows("shadow", 2, 0), champion_n=400), canary_arm="shadow").outcome == "rollback"
    # Too few champion requests, or a share too small to expect any: wait as before.
    assert run(log(nothing, champion_n=150), canary_percent=10.0).outcome == "wait"
    assert run(log(nothing, champion_n=400), canary_percent=1.0).outcome == "wait"
    assert run(log(arm_rows("canary", 2, 3), champion_n=400), canary_percent=10.0).outcome == "wait"
