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
    # The step's failure (what the run-failure alert quotes) says it too, not only "failed with code 1".
    failure = outcome.failure_data_for_node("trained").user_failure_data
    assert failure is not None and failure.description.startswith("ml.train: ")
    assert "training.model 'xgboost' is not one of lightgbm, logistic_regression" in failure.description


def test_an_entry_point_that_cannot_write_its_output_fails_the_step_naming_the_path(tmp_path):
    """A store folder that cannot be written (here a file stands where the output's folder goes)."""
    (tmp_path / "writer.py").write_text(
        "import os\nfrom dagster_pipes import open_dagster_pipes\n"
        "with open_dagster_pipes():\n    os.makedirs(os.path.join(os.environ['OUT'], 'run-1'))\n"
    )
    (tmp_path / "day=2026-10-10").write_text("")

    @dg.asset
    def scored(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        compute.run(context, "writer", {}, {})

    compute = LocalCompute(working_dir=str(tmp_path), env={"OUT": str(tmp_path / "day=2026-10-10")})
    outcome = dg.materialize([scored], resources={"compute": compute}, raise_on_error=False)
    assert not outcome.success
    description = outcome.failure_data_for_node("scored").user_failure_data.description
    assert description.startswith("writer: NotADirectoryError: ") and "day=2026-10-10/run-1" in description


PROBE = """
import os, sys
from dagster_pipes import open_dagster_pipes

index = int(os.environ["KEEL_SHARD_INDEX"])
open(os.path.join(os.environ["OUT"], f"replica-{index}"), "w").write(os.environ["OMP_NUM_THREADS"])
if index == 0:
    with open_dagster_pipes() as pipes:
        pipes.report_asset_materialization(metadata={"replica": index})
else:
    print(f"replica {index} says hello", file=sys.stderr)
    sys.exit(1 if str(index) == os.environ.get("FAIL") else 0)
"""


def run_replicas(tmp_path, fail: str | None) -> dg.ExecuteInProcessResult:
    (tmp_path / "replica_probe.py").write_text(PROBE)
    env = {"OUT": str(tmp_path), "OMP_NUM_THREADS": "1", **({"FAIL": fail} if fail else {})}

    @dg.asset
    def sharded(context: dg.AssetExecutionContext, compute: ComputeBackend) -> dg.MaterializeResult:
        return compute.run(context, "replica_probe", {}, {}, replicas=3).get_materialize_result()

    compute = LocalCompute(working_dir=str(tmp_path), env=env)
    return dg.materialize([sharded], resources={"compute": compute}, raise_on_error=False)


def test_local_replicas_run_at_once_each_with_its_index_and_only_replica_0_reports(tmp_path):
    outcome = run_replicas(tmp_path, fail=None)
    assert outcome.success
    assert outcome.asset_materializations_for_node("sharded")[0].metadata["replica"].value == 0
    assert sorted(p.name for p in tmp_path.glob("replica-*")) == ["replica-0", "replica-1", "replica-2"]


def test_a_failing_local_replica_fails_the_call_with_its_last_lines(tmp_path):
    outcome = run_replicas(tmp_path, fail="2")
    assert not outcome.success
    message = outcome.failure_data_for_node("sharded").error.to_string()
    assert "replica 2 exited with 1: replica 2 says hello" in message and "replica 1 exited" not in message
