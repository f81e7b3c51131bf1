"""Two training runs at once, each in its own process: each gate grades its own run's candidate, and
each registration obeys its own gate (tests/assets/interleaved_run.py makes them overlap at the worst
moments: both candidates exist before either gate reads one, and run A registers only after run B's
failing gate is the latest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.candidate_model import candidate_model
from assets.evaluation_gate import CHECK_NAME
from assets.registered_model import registered_model
from orchestration.deployments import local
from tests.conftest import REPO, set_params

MODEL = "telco_churn"
GOOD = {"ops": {"candidate_model": {"config": {"seed": 7}}}}  # passes: not worse than champion v1 beyond the noise
WEAK = {"ops": {"candidate_model": {"config": {"hyperparameters": {"n_estimators": 1, "num_leaves": 2}}}}}
GATE = dg.AssetCheckKey(candidate_model.key, CHECK_NAME)


def test_two_training_runs_at_once_each_gate_and_registration_keeps_to_its_own_candidate(
    trained_project: Path, tmp_path: Path
):
    set_params(trained_project, gate={"min_auc": 0.80})
    sync = tmp_path / "sync"
    sync.mkdir()
    runs = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.assets.interleaved_run",
                str(trained_project),
                name,
                json.dumps(config),
                str(sync),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, config in (("A", GOOD), ("B", WEAK))
    }
    outcome, logs = {}, {}
    for name, process in runs.items():
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, err[-3000:]
        outcome[name] = json.loads(out.strip().splitlines()[-1])
        logs[name] = [line for line in err.splitlines() if "ERROR" in line or "rror:" in line][-8:]
    assert outcome["A"]["success"] and not outcome["B"]["success"], (outcome, logs)

    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:

        def candidate_of(run_id: str) -> dict:
            (record,) = [
                r for r in instance.fetch_materializations(candidate_model.key, limit=10).records if r.run_id == run_id
            ]
            return {k: v.value for k, v in record.asset_materialization.metadata.items()}

        def gate_of(run_id: str):
            (record,) = [
                r
                for r in instance.event_log_storage.get_asset_check_execution_history(GATE, limit=10)
                if r.run_id == run_id
            ]
            return record.evaluation, record.event.timestamp

        a, b = candidate_of(outcome["A"]["run_id"]), candidate_of(outcome["B"]["run_id"])
        (gate_a, graded_a), (gate_b, graded_b) = gate_of(outcome["A"]["run_id"]), gate_of(outcome["B"]["run_id"])
        (registration,) = instance.fetch_materializations(registered_model.key, limit=10).records[:1]
        candidates = instance.fetch_materializations(candidate_model.key, limit=10).records
    assert a["manifest_sha256"] != b["manifest_sha256"]
    # Each gate graded the candidate of its own run, although the other run's candidate existed too.
    assert gate_a.metadata["candidate_manifest_sha256"].value == a["manifest_sha256"]
    assert gate_b.metadata["candidate_manifest_sha256"].value == b["manifest_sha256"]
    assert gate_a.metadata["candidate_auc"].value == pytest.approx(a["roc_auc"], abs=1e-9)
    assert gate_a.passed and not gate_b.passed
    # When each gate ran, both candidates existed; run B's gate was graded after A's, and run A registered
    # after that: "the latest gate" was run B's failed one, and run A obeyed its own.
    assert max(c.timestamp for c in candidates[:2]) < graded_a < graded_b < registration.timestamp
    assert registration.run_id == outcome["A"]["run_id"]
    registry = local(trained_project)["registry"]
    assert registry.versions(MODEL) == [1, 2] and registry.champion() == 2
    tags = registry.version_info(MODEL, 2)["tags"]
    assert tags["manifest_sha256"] == a["manifest_sha256"]
    assert tags["keel.training_dagster_run_id"] == outcome["A"]["run_id"]
