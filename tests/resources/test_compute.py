"""The compute interface: the command an entry point gets, and the local backend through Pipes."""

import json

import dagster as dg

from resources.compute import ComputeBackend, LocalCompute, entry_point_command
from tests.conftest import REPO


def test_entry_point_command_is_stable_and_names_every_input_and_output():
    command = entry_point_command("py", "ml.train", {"state": "s.json", "features": "f.parquet"}, {"out": "dir"})
    assert command == ["py", "-m", "ml.train", "--features", "f.parquet", "--state", "s.json", "--out", "dir"]


def test_a_backend_without_run_says_so():
    @dg.asset
    def needs_compute(context: dg.AssetExecutionContext, compute: ComputeBackend):
        compute.run(context, "ml.train", {}, {})

    result = dg.materialize([needs_compute], resources={"compute": ComputeBackend()}, raise_on_error=False)
    assert "ComputeBackend does not implement run()" in result.failure_data_for_node("needs_compute").error.to_string()


def test_local_compute_returns_what_the_entry_point_reported(training_inputs, tmp_path):
    reports = []

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> dg.MaterializeResult:
        inputs = {k: training_inputs[k] for k in ("features", "state", "config")}
        result = compute.run(context, "ml.train", inputs, {"out": str(tmp_path / "model")}).get_materialize_result()
        reports.append(result.metadata["report"].value)
        return result

    outcome = dg.materialize([trained], resources={"compute": LocalCompute(working_dir=str(REPO))})
    assert outcome.success
    (report,) = reports
    assert report["artifact_uri"] == str(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert set(manifest["files"]) == set(report["files"])
    assert (
        outcome.asset_materializations_for_node("trained")[0].tags["dagster/data_version"] == report["manifest_sha256"]
    )


def test_a_failing_entry_point_fails_the_step_with_its_message(training_inputs, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"model": "xgboost"}))

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        inputs = {
            "features": training_inputs["features"],
            "state": training_inputs["state"],
            "config": str(tmp_path / "bad.json"),
        }
        compute.run(context, "ml.train", inputs, {"out": str(tmp_path / "model")})

    instance = dg.DagsterInstance.ephemeral()
    resources = {"compute": LocalCompute(working_dir=str(REPO))}
    outcome = dg.materialize([trained], resources=resources, instance=instance, raise_on_error=False)
    assert not outcome.success
    # The entry point's one-line error comes back through Pipes as an ERROR line of the run's log.
    messages = "\n".join(e.user_message for e in instance.all_logs(outcome.run_id) if e.level >= 40)
    assert "training.model 'xgboost' is not one of lightgbm, logistic_regression" in messages
    assert not (tmp_path / "model").exists()
