"""The demo on the embedded defaults: `make demo` (or `python -m orchestration.demo`).

Runs the `train_model` job against the Dagster instance in $DAGSTER_HOME (var/dagster), so that
`make ui` afterwards shows its history: import and version the raw data (DVC), check it (GX), build
the training set, train a candidate, gate it, and register it in MLflow (var/mlflow). Then it pushes
the versioned data to the local DVC remote and prints what was produced.
"""

from __future__ import annotations

import os
import sys
import time

import dagster as dg

from assets.candidate_model import candidate_model
from assets.raw_data import raw_data
from assets.registered_model import registered_model
from assets.training_set import training_set
from orchestration.definitions import defs
from orchestration.deployments import PROJECT_ROOT, resources_for

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "f1")


def _metadata(instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str) -> dict:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.run_id != run_id:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _report(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    run = result.run_id
    raw, data = _metadata(instance, raw_data.key, run), _metadata(instance, training_set.key, run)
    candidate, registered = (
        _metadata(instance, candidate_model.key, run),
        _metadata(instance, registered_model.key, run),
    )
    print("\n== What was produced ==")
    if raw:
        print(
            f"raw_data        version (DVC md5) {raw['dvc_md5']}  rows {raw['dagster/row_count']}  "
            f"columns {raw['columns']}  git {raw['git_revision'][:12]}"
        )
    for check in result.get_asset_check_evaluations():
        target = check.asset_key.to_user_string()
        reason = check.metadata.get("reason")
        print(
            f"  check {target}/{check.check_name:<16} {'passed' if check.passed else 'FAILED'}"
            + (f"  {reason.value}" if reason else "")
        )
    if data:
        print(
            f"training_set    {data['train_rows']} train / {data['holdout_rows']} holdout rows ({data['holdout']}), "
            f"{data['feature_count']} features"
        )
    if candidate:
        print(
            f"candidate_model {candidate['model_family']} trained in {candidate['training_seconds']:.1f}s, "
            f"MLflow run {candidate['mlflow_run_id']}"
        )
        print("                holdout " + "  ".join(f"{m} {candidate[m]:.4f}" for m in METRICS))
    if registered and not registered["registered"]:
        print(f"registered      nothing new: {registered['reason']}")
    elif registered:
        print(
            f"registered      {registered['model']} v{registered['version']} -> alias {registered['alias']} "
            f"(was {registered['moved_from']}); champion is v{registered['champion_version']}"
        )


def main() -> int:
    if "DAGSTER_HOME" not in os.environ:
        print("DAGSTER_HOME is not set; run the demo with `make demo`", file=sys.stderr)
        return 2
    started = time.monotonic()
    instance = dg.DagsterInstance.get()
    print(
        "Running job train_model: raw data (DVC) + data checks (GX) -> training set -> candidate -> gate -> MLflow ..."
    )
    result = defs.resolve_job_def("train_model").execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
    )
    _report(instance, result)
    if result.success:
        resources_for()["dvc"].run("push")
        print(f"DVC             pushed to the local remote ({PROJECT_ROOT / 'var' / 'dvc-remote'})")
    else:
        print("The run failed: see the errors above, or the run in the UI.")
    print(f"\nDone in {time.monotonic() - started:.0f}s (run {result.run_id}).")
    print("Open the UI on this history:  make ui   ->  http://127.0.0.1:3000  (Assets, Runs, Jobs)")
    print("MLflow UI on the registry:    make mlflow -> http://127.0.0.1:5000")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
