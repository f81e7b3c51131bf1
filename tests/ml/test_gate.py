"""The gate's rule: a minimum AUC AND no worse than the champion beyond the tolerance."""

from __future__ import annotations

from ml.gate import decide


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
