"""Training set -> candidate -> evaluation gate -> registry, run by Dagster on the Telco data.

Every test works on its own copy of a project where one good training run has made v1 the champion,
with a real MLflow SQLite store and artifact folder inside the copy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pytest

from assets.candidate_model import candidate_model
from assets.registered_model import registered_model
from orchestration.deployments import local
from orchestration.promotion import approve, rollback
from tests.conftest import lock_md5, set_params, train, training_assets

MODEL = "telco_churn"
SEED_7 = {"ops": {"candidate_model": {"config": {"seed": 7}}}}  # another model from the same data
WEAK = {"ops": {"candidate_model": {"config": {"hyperparameters": {"n_estimators": 1, "num_leaves": 2}}}}}


@pytest.fixture
def instance(trained_project: Path):
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as inst:
        yield inst


@pytest.fixture
def registry(trained_project: Path):
    return local(trained_project)["registry"]


def metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def gate_result(result) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "evaluation_gate"]
    return evaluation


def test_a_good_candidate_passes_the_gate_and_becomes_champion_with_its_lineage(trained_project, instance, registry):
    assert registry.versions(MODEL) == [1] and registry.alias_version(MODEL, "champion") == 1
    candidate = metadata(instance, candidate_model.key)
    assert 0.83 < candidate["roc_auc"] < 0.87  # published baselines on this data: about 0.83-0.85
    plots = candidate["plots"]
    assert plots.count("data:image/png;base64,") == 4
    assert plots.index("### roc") < plots.index("### precision_recall") < plots.index("### calibration")
    importances = [r.data["importance"] for r in candidate["top_features"].records]
    assert len(importances) == 10 and importances == sorted(importances, reverse=True)
    info = registry.version_info(MODEL, 1)
    tags = info["tags"]
    assert tags["keel.data_version"] == lock_md5(trained_project)  # the DVC hash of the raw data
    assert tags["keel.dagster_run_id"] == metadata(instance, registered_model.key)["alias_move"]["dagster_run_id"]
    assert tags["keel.training_dagster_run_id"] == candidate["dagster_run_id"]
    assert tags["manifest_sha256"] == candidate["manifest_sha256"]
    assert float(tags["keel.metric.roc_auc"]) == pytest.approx(candidate["roc_auc"], abs=1e-6)
    assert len(tags["keel.git_commit"]) >= 40 and tags["keel.code_version"] == candidate["code_version"]
    # Tracking: the MLflow run holds parameters, metrics, lineage tags and the artifact files.
    run = registry.client().get_run(info["run_id"])
    assert run.data.params["model"] == "lightgbm" and run.data.params["hp.num_leaves"] == "8"
    assert run.data.metrics["roc_auc"] == pytest.approx(candidate["roc_auc"])
    assert run.data.tags["keel.gate"] == "passed"
    files = {f.path for f in registry.client().list_artifacts(info["run_id"], "model")}
    assert {"model/model.txt", "model/manifest.json", "model/feature_state.json", "model/metrics.json"} <= files
    # The alias move is recorded in MLflow and as the registered_model materialization.
    (move,) = registry.alias_history(MODEL, "champion")
    assert (move.from_version, move.to_version, move.kind) == (None, 1, "promote")
    assert "passed: AUC" in move.reason
    assert metadata(instance, registered_model.key)["moved_to"] == "v1"


def test_same_data_and_seed_give_identical_metrics_and_artifact(trained_project, instance, registry):
    first = metadata(instance, candidate_model.key)
    assert train(trained_project, instance).success
    second = metadata(instance, candidate_model.key)
    assert second["manifest_sha256"] == first["manifest_sha256"]
    assert {k: second[k] for k in ("roc_auc", "pr_auc", "log_loss", "brier", "f1")} == {
        k: first[k] for k in ("roc_auc", "pr_auc", "log_loss", "brier", "f1")
    }
    # It passes the gate (equal to the champion), but a byte-identical artifact is not registered again.
    recorded = metadata(instance, registered_model.key)
    assert recorded["registered"] is False and "byte-identical to champion v1" in recorded["reason"]
    assert registry.versions(MODEL) == [1] and registry.alias_version(MODEL, "champion") == 1


def test_a_new_seed_passes_the_gate_and_takes_over_as_champion(trained_project, instance, registry):
    result = train(trained_project, instance, run_config=SEED_7)
    assert result.success and "not worse than champion v1" in gate_result(result).metadata["reason"].value
    assert registry.alias_version(MODEL, "champion") == 2
    assert [(m.from_version, m.to_version) for m in registry.alias_history(MODEL, "champion")] == [(None, 1), (1, 2)]
    assert metadata(instance, registered_model.key)["registered"] is True


@pytest.mark.parametrize(
    ("min_auc", "reason"),
    [
        # A fixed bar still shows what the best single column reaches beside it.
        (0.80, r"AUC 0\.7\d+ is below the minimum 0\.8000 \(gate\.min_auc; best single column \w+ 0\.\d{4}\)"),
        (0.70, r"AUC 0\.7\d+ is worse than champion v1 \(0\.8\d+\) beyond the noise: difference -0\.1\d+"),
    ],
)
def test_a_worse_candidate_is_blocked_and_nothing_is_registered(trained_project, instance, registry, min_auc, reason):
    set_params(trained_project, gate={"min_auc": min_auc})
    result = train(trained_project, instance, run_config=WEAK)
    assert not result.success
    gate = gate_result(result)
    assert not gate.passed and re.search(reason, gate.metadata["reason"].value)
    assert gate.description == gate.metadata["reason"].value  # what the command line prints with the verdict
    assert registry.versions(MODEL) == [1] and registry.alias_version(MODEL, "champion") == 1
    blocked_run = metadata(instance, candidate_model.key)["mlflow_run_id"]
    assert registry.client().get_run(blocked_run).data.tags["keel.gate"] == "failed"  # still tracked
    # Registering that candidate later, in a run of its own, is refused as well.
    alone = dg.materialize(
        training_assets(),
        selection=[registered_model],
        resources=local(trained_project),
        instance=instance,
        raise_on_error=False,
    )
    message = alone.failure_data_for_node("registered_model").error.message
    assert "candidate_model did not pass its evaluation gate (evaluation_gate: failed: blocked: AUC" in message
    assert re.search(reason, message)  # the gate's reason travels with the refusal
    assert registry.versions(MODEL) == [1]


def test_run_config_picks_the_scikit_learn_family(trained_project, instance, registry):
    config = {"ops": {"candidate_model": {"config": {"model": "logistic_regression", "hyperparameters": {"C": 0.5}}}}}
    result = train(trained_project, instance, run_config=config)
    assert result.success, gate_result(result).metadata["reason"].value
    candidate = metadata(instance, candidate_model.key)
    assert candidate["model_family"] == "logistic_regression" and candidate["hyperparameters"]["C"] == 0.5
    assert registry.version_info(MODEL, 2)["tags"]["keel.model_family"] == "logistic_regression"
    assert "not worse than champion v1" in gate_result(result).metadata["reason"].value


def test_manual_promotion_waits_for_the_approve_job(trained_project, instance, registry):
    set_params(trained_project, registry={"promotion": "manual"})
    assert train(trained_project, instance, run_config=SEED_7).success
    assert registry.alias_version(MODEL, "challenger") == 2 and registry.alias_version(MODEL, "champion") == 1

    result = approve.execute_in_process(
        run_config={"ops": {"approve_challenger": {"config": {"reason": "reviewed the plots"}}}},
        resources=local(trained_project),
        instance=instance,
    )
    assert result.success
    assert registry.alias_version(MODEL, "champion") == 2 and registry.alias_version(MODEL, "challenger") is None
    move = registry.alias_history(MODEL, "champion")[-1]
    assert (move.from_version, move.to_version, move.kind, move.reason) == (1, 2, "approve", "reviewed the plots")
    recorded = metadata(instance, registered_model.key)
    assert recorded["alias_move"]["kind"] == "approve" and recorded["champion_version"] == 2

    again = approve.execute_in_process(
        run_config={"ops": {"approve_challenger": {"config": {"reason": "twice"}}}},
        resources=local(trained_project),
        instance=instance,
        raise_on_error=False,
    )
    assert "has no challenger to approve" in again.failure_data_for_node("approve_challenger").error.message


def test_rollback_moves_the_champion_back_and_says_when_it_cannot(trained_project, instance, registry):
    assert train(trained_project, instance, run_config=SEED_7).success  # v2 takes over from v1
    config = {"ops": {"rollback_champion": {"config": {"reason": "v2 misbehaves in production"}}}}
    assert rollback.execute_in_process(run_config=config, resources=local(trained_project), instance=instance).success
    assert registry.alias_version(MODEL, "champion") == 1
    move = registry.alias_history(MODEL, "champion")[-1]
    assert (move.from_version, move.to_version, move.kind) == (2, 1, "rollback")
    assert metadata(instance, registered_model.key)["reason"] == "v2 misbehaves in production"

    again = rollback.execute_in_process(
        run_config=config, resources=local(trained_project), instance=instance, raise_on_error=False
    )
    assert (
        "champion v1 has no earlier champion to roll back to"
        in again.failure_data_for_node("rollback_champion").error.message
    )


def test_a_tampered_champion_artifact_is_refused(trained_project, instance, registry):
    source = registry.version_info(MODEL, 1)["source"]
    model_file = Path(source.removeprefix("file://")) / "model.txt"
    model_file.write_text(model_file.read_text().replace("learning_rate", "learning_rat3", 1))
    with pytest.raises(Exception, match=r"model 'telco_churn' v1: .*model\.txt: sha256 .* does not match"):
        registry.download(MODEL, 1, trained_project / "download")
    assert not (trained_project / "download").exists()

    result = train(trained_project, instance)
    gate = gate_result(result)
    assert not result.success and not gate.passed
    assert "model.txt: sha256" in gate.metadata["reason"].value
    assert registry.versions(MODEL) == [1]


def test_the_entry_point_reports_the_same_artifact_through_pipes_as_by_hand(trained_project, instance):
    """candidate_model ran ml.train through Pipes; by hand on the same inputs it writes the same artifact."""
    from assets.features import features
    from tests.ml.test_train import train_cli

    candidate, built = metadata(instance, candidate_model.key), metadata(instance, features.key)
    inputs = {
        "features": built["table"],
        "state": built["feature_state"],
        "config": f"{candidate['artifact']}.config.json",
    }
    proc = train_cli(inputs, trained_project / "by_hand")
    assert proc.returncode == 0, proc.stderr
    by_hand = json.loads(proc.stdout)
    assert by_hand["manifest_sha256"] == candidate["manifest_sha256"]
    assert by_hand["metrics"]["roc_auc"] == candidate["roc_auc"]


def test_a_candidate_is_not_promoted_over_a_champion_it_was_not_compared_with(trained_project, instance, registry):
    from assets.evaluation_gate import evaluation_gate
    from assets.training_set import training_set

    resources = local(trained_project)
    gated = dg.materialize(
        training_assets(),
        selection=[training_set, candidate_model, evaluation_gate],
        resources=resources,
        instance=instance,
        run_config=SEED_7,
    )
    assert gated.success and gate_result(gated).metadata["champion_version"].value == 1
    # Meanwhile someone else makes another version champion.
    v1 = registry.version_info(MODEL, 1)
    other = registry.register(MODEL, v1["run_id"], {"manifest_sha256": v1["tags"]["manifest_sha256"]})
    registry.move_alias(MODEL, "champion", other, expected_from=1, reason="hotfix", actor="someone else")

    late = dg.materialize(
        training_assets(), selection=[registered_model], resources=resources, instance=instance, raise_on_error=False
    )
    message = late.failure_data_for_node("registered_model").error.message
    assert "champion of telco_churn is v2 now, but the gate compared this candidate with v1" in message
    assert registry.versions(MODEL) == [1, 2] and registry.alias_version(MODEL, "champion") == 2
