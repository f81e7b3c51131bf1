"""A story without a drift scenario: ten nights scored, no drift verdict, no retrain."""

from pathlib import Path

from tests.e2e.test_drift_story import tell


def test_no_scenario_means_no_drift_and_no_retrain(trained_project: Path):
    nights, instance, _, _ = tell(trained_project, {"name": "none"})

    assert all(n.success for n in nights)
    assert [n.verdict for n in nights] == ["no drift"] * 10, [(n.day, n.drifted) for n in nights]
    assert not [r for n in nights for r in n.retrain_requests]
    assert {n.version for n in nights} == {1}
