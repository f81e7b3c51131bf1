"""The gate's rule: a minimum AUC AND no worse than the champion beyond the tolerance, or beyond the noise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ml.gate import decide, paired_auc_difference, weighted_aucs


def test_first_model_needs_only_the_minimum():
    assert decide(0.85, min_auc=0.8, max_auc_drop=0.01).passed
    blocked = decide(0.75, min_auc=0.8, max_auc_drop=0.01)
    assert not blocked.passed and "AUC 0.7500 is below the minimum 0.8000" in blocked.reason


def test_within_tolerance_of_the_champion_passes():
    decision = decide(0.845, min_auc=0.8, max_auc_drop=0.01, champion_version=3, champion_auc=0.85)
    assert decision.passed and "within 0.0100 of champion v3 (0.8500)" in decision.reason


def test_worse_than_the_champion_beyond_tolerance_is_blocked_even_above_the_minimum():
    decision = decide(0.83, min_auc=0.8, max_auc_drop=0.01, champion_version=3, champion_auc=0.85)
    assert not decision.passed
    assert "worse than champion v3 (0.8500) by 0.0200, more than the tolerance 0.0100" in decision.reason


def test_both_failures_are_named():
    decision = decide(0.5, min_auc=0.8, max_auc_drop=0.01, champion_version=1, champion_auc=0.85)
    assert (
        decision.reason.count(";") == 1 and "below the minimum" in decision.reason and "worse than" in decision.reason
    )


def _scores(rng, labels, separation):
    """Scores whose AUC grows with `separation` (positives shifted up by it)."""
    return 1 / (1 + np.exp(-(rng.normal(size=len(labels)) + separation * labels)))


def test_the_weighted_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 500)
    scores = np.round(_scores(rng, labels, 1.0), 2)  # rounded: many ties
    assert weighted_aucs(labels, scores, np.ones((1, 500)))[0] == pytest.approx(roc_auc_score(labels, scores))


def test_a_candidate_worse_only_within_the_noise_is_promoted():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 1000)
    shared = rng.normal(size=1000) + 1.0 * labels
    champion = 1 / (1 + np.exp(-shared))
    candidate = 1 / (1 + np.exp(-(shared + rng.normal(scale=0.1, size=1000))))  # a touch noisier
    difference = paired_auc_difference(labels, candidate, champion)
    assert difference.difference < 0 < difference.upper  # lower on these rows, but not beyond the noise
    decision = decide(0.7, min_auc=0.6, max_auc_drop=0.0, champion_version=1, champion_auc=0.71, difference=difference)
    assert decision.passed and "not worse than champion v1 (0.7100) beyond the noise" in decision.reason


def test_a_candidate_worse_beyond_the_noise_is_blocked():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 1000)
    champion = _scores(rng, labels, 1.5)
    candidate = _scores(rng, labels, 0.7)
    difference = paired_auc_difference(labels, candidate, champion)
    assert difference.upper < 0
    decision = decide(0.7, min_auc=0.6, max_auc_drop=0.0, champion_version=1, champion_auc=0.8, difference=difference)
    assert not decision.passed and "beyond the noise" in decision.reason


def test_the_same_point_difference_is_noise_on_few_rows_and_evidence_on_many():
    rng = np.random.default_rng(4)
    few, many = (rng.integers(0, 2, n) for n in (60, 6000))
    verdicts = []
    for labels in (few, many):
        shared = rng.normal(size=len(labels)) + 1.0 * labels
        worse = shared + rng.normal(scale=0.6, size=len(labels))
        verdicts.append(paired_auc_difference(labels, 1 / (1 + np.exp(-worse)), 1 / (1 + np.exp(-shared))).upper < 0)
    assert verdicts == [False, True]


def test_one_class_only_cannot_be_compared():
    with pytest.raises(ValueError, match="one class only"):
        paired_auc_difference(np.ones(10), np.linspace(0, 1, 10), np.linspace(0, 1, 10))


def test_a_candidate_below_the_bar_replaces_a_champion_it_beats_beyond_the_noise():
    # After a change no model reaches the bar of the best column; the champion is worse still.
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 2000)
    champion = _scores(rng, labels, 0.1)
    candidate = _scores(rng, labels, 0.6)
    difference = paired_auc_difference(labels, candidate, champion)
    assert difference.lower > 0
    auc, champion_auc = roc_auc_score(labels, candidate), roc_auc_score(labels, champion)
    decision = decide(
        auc, min_auc=0.7, max_auc_drop=0.0, champion_version=2, champion_auc=champion_auc, difference=difference
    )
    assert auc < 0.7 and decision.passed
    assert "below the minimum 0.7000" in decision.reason and "better than champion v2" in decision.reason
    # Ahead of the champion only within the noise: the bar still blocks it.
    close = paired_auc_difference(labels, candidate, _scores(np.random.default_rng(6), labels, 0.6))
    assert close.lower <= 0
    blocked = decide(auc, min_auc=0.7, max_auc_drop=0.0, champion_version=2, champion_auc=auc - 0.001, difference=close)
    assert not blocked.passed and "below the minimum 0.7000" in blocked.reason
    # No champion: the bar alone.
    assert not decide(auc, min_auc=0.7, max_auc_drop=0.0).passed
