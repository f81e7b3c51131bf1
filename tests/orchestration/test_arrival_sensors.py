"""The arrival sensors and the nightly schedule: runs keyed by the file's version, skips with reasons."""

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from demo.story import launch
from orchestration.definitions import definitions, defs
from orchestration.deployments import local
from resources.params import ParamsResource
from tests.conftest import REPO
from tests.orchestration.test_sensors import evaluate, materialize

DAY = "2026-10-02"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "data" / "labels").mkdir(parents=True)
    (root / "data" / "incoming").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    return root


def labels_file(root: Path, day: str, ids: list[str]) -> Path:
    path = root / "data" / "labels" / f"{day}.parquet"
    pd.DataFrame({"customer_id": ids, "churn": ["No"] * len(ids)}).to_parquet(path)
    return path


def test_a_failed_labels_run_is_retried_once_the_file_is_corrected_and_the_tick_says_why_it_waits(root: Path):
    resources = local(root)
    with dg.instance_for_test() as instance:
        materialize(instance, "batch_predictions", DAY)  # the day was scored
        path = labels_file(root, DAY, ["C1", "C1", "C2"])  # duplicate ids: labels refuses the file
        [first] = evaluate("labels_arrived", instance, {"params": resources["params"]}).run_requests
        failed = launch(definitions(resources), "label_feedback", instance, first, sensor="labels_arrived")
        assert not failed.success

        for later in range(3, 13):  # ten later days already taken in: the failure is still the one shown
            labels_file(root, f"2026-10-{later:02d}", ["C1"])
            materialize(instance, "batch_predictions", f"2026-10-{later:02d}")
            materialize(instance, "model_performance", f"2026-10-{later:02d}")
        waiting = evaluate("labels_arrived", instance, {"params": resources["params"]})
        assert not waiting.run_requests and "(3 earlier days not shown)" in waiting.skip_message
        assert f"{DAY}: run {failed.run_id[:8]} failure on this file version ({path})" in waiting.skip_message
        assert "correct or re-deliver the file and it runs again" in waiting.skip_message

        labels_file(root, DAY, ["C1", "C2", "C3"])  # corrected
        [retry] = evaluate("labels_arrived", instance, {"params": resources["params"]}).run_requests
        assert retry.partition_key == DAY and retry.run_key != first.run_key
        # The daemon launches a request only when no run of the sensor used its key: this one is new.
        assert not instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": retry.run_key}))
        # The corrected file gets past the duplicate check; this instance only pretends the day was
        # scored (no predictions file), so labels now stops at the next check, naming it.
        rerun = launch(definitions(resources), "label_feedback", instance, retry, sensor="labels_arrived")
        failure = str([e.event_specific_data.error for e in rerun.all_events if e.is_step_failure][0].message)
        assert "repeated id" not in failure and "neither predictions nor a checked incoming file" in failure


def test_incoming_sensor_scores_arrived_days_once_per_file_version_and_names_what_it_skips(root: Path):
    params = {"params": ParamsResource(project_dir=str(root))}
    today = dt.datetime.now(dt.UTC).date()
    for day in ("2026-09-30", "2026-10-01", DAY, str(today)):
        pd.DataFrame({"customer_id": ["C1"]}).to_parquet(root / "data" / "incoming" / f"{day}.parquet")
    with dg.instance_for_test() as instance:
        materialize(instance, "drift_report", "2026-10-01")  # scored after its file arrived (a backfill)
        result = evaluate("incoming_arrived", instance, params)
        [request] = result.run_requests
        assert request.partition_key == DAY and request.run_key.startswith(f"incoming-{DAY}-")
        assert request.tags["keel/file"].endswith(f"data/incoming/{DAY}.parquet")
        assert defs.resolve_sensor_def("incoming_arrived").job_name == "nightly_scoring"

        materialize(instance, "drift_report", DAY)
        quiet = evaluate("incoming_arrived", instance, params)
        assert not quiet.run_requests
        for reason in (
            "2026-09-30: before daily.start_date 2026-10-01",
            f"{DAY}: drift_report was materialized after this file was written",
            f"{today}: not a partition yet",
        ):
            assert reason in quiet.skip_message

        # A corrected file (a new version) is scored again, with a new key.
        pd.DataFrame({"customer_id": ["C1", "C2"]}).to_parquet(root / "data" / "incoming" / f"{DAY}.parquet")
        [again] = evaluate("incoming_arrived", instance, params).run_requests
        assert again.partition_key == DAY and again.run_key != request.run_key


def schedule_tick(instance, root: Path, when: dt.datetime):
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={"params": ParamsResource(project_dir=str(root))},
        repository_def=defs.get_repository_def(),
    )
    return defs.resolve_schedule_def("nightly_scoring_schedule").evaluate_tick(context)


def test_the_schedule_skips_a_day_without_a_file_naming_it_and_a_day_already_scored(root: Path):
    night = dt.datetime(2026, 10, 31, 2, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        missing = schedule_tick(instance, root, night)
        assert not missing.run_requests
        assert (
            f"no incoming file for 2026-10-30: {root / 'data' / 'incoming' / '2026-10-30.parquet'} does not exist"
            in (missing.skip_message)
        )

        pd.DataFrame({"customer_id": ["C1"]}).to_parquet(root / "data" / "incoming" / "2026-10-30.parquet")
        [request] = schedule_tick(instance, root, night).run_requests
        assert request.partition_key == "2026-10-30" and request.run_key.startswith("incoming-2026-10-30-")

        materialize(instance, "drift_report", "2026-10-30")  # the sensor scored it when it arrived
        done = schedule_tick(instance, root, night)
        assert (
            not done.run_requests and "drift_report was materialized after this file was written" in done.skip_message
        )


def test_the_daily_jobs_are_retried_by_the_daemon_and_training_only_when_its_process_died(tmp_path: Path):
    from tests.conftest import write_dagster_home

    with dg.DagsterInstance.from_config(str(write_dagster_home(tmp_path / "home"))) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 0
        assert instance.run_monitoring_enabled
    for job in ("nightly_scoring", "label_feedback"):
        assert int(defs.resolve_job_def(job).tags["dagster/max_retries"]) >= 1
    for job in ("train_model", "retrain"):  # a failed gate would fail again (test_dead_runs.py holds both sides)
        assert defs.resolve_job_def(job).tags["dagster/retry_on_asset_or_op_failure"] == "false"


IN_CHILD = "KEEL_TEST_IN_CHILD_PROCESS"


def test_a_redelivered_labels_file_in_its_own_process():
    """The test below runs in a child pytest: in the suite's worker, the in-process runs it makes left
    Dagster state behind that later files' default ephemeral instances tripped on (`unable to open
    database file`, a removed temporary run storage), depending on the order of the files."""
    test = f"{__file__}::test_a_redelivered_labels_file_updates_the_days_labels_and_model_performance"
    child = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=REPO,
        env={**os.environ, IN_CHILD: "1"},
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0 and "1 passed" in child.stdout, child.stdout[-4000:] + child.stderr[-2000:]


@pytest.mark.skipif(os.environ.get(IN_CHILD) != "1", reason="run by test_a_redelivered_labels_file_in_its_own_process")
def test_a_redelivered_labels_file_updates_the_days_labels_and_model_performance(trained_project: Path):
    import ml.io
    from ml.params import load_params
    from ml.simulate import simulate_day, write_labels, write_snapshot
    from orchestration.history import latest_metadata
    from tests.conftest import clear_daily_files

    project = trained_project
    clear_daily_files(project)
    resources = local(project)
    location = definitions(resources)
    params = load_params(project / "params.yaml")
    snapshot, labels = simulate_day(ml.io.read_parquet(params.raw_uri), params.dataset, params.simulation, 1)
    write_snapshot(snapshot, params.daily, 1, project)
    day = str(params.daily.date(1))
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as instance:
        [scoring] = evaluate("incoming_arrived", instance, resources).run_requests
        assert launch(location, "nightly_scoring", instance, scoring, sensor="incoming_arrived").success

        write_labels(labels, params.daily, 1, project)
        [first] = evaluate("labels_arrived", instance, resources).run_requests
        assert launch(location, "label_feedback", instance, first, sensor="labels_arrived").success
        before = latest_metadata(instance, model_performance_key, day)
        assert "this file version already ran" in evaluate("labels_arrived", instance, resources).skip_message

        corrected = labels.copy()  # the re-delivered file: a fifth of the outcomes were wrong
        flip = corrected.index[: len(corrected) // 5]
        corrected.loc[flip, "churn"] = corrected.loc[flip, "churn"].map({"Yes": "No", "No": "Yes"})
        write_labels(corrected, params.daily, 1, project)
        [second] = evaluate("labels_arrived", instance, resources).run_requests
        assert second.partition_key == day and second.run_key != first.run_key
        assert launch(location, "label_feedback", instance, second, sensor="labels_arrived").success
        after = latest_metadata(instance, model_performance_key, day)
        assert after["roc_auc"] < before["roc_auc"] - 0.05  # computed on the new labels
        labelled = latest_metadata(instance, dg.AssetKey("labels"), day)
        assert labelled["positive_rate"] != pytest.approx((labels["churn"] == "Yes").mean())


model_performance_key = dg.AssetKey("model_performance")


def test_the_incoming_folder_can_be_any_fsspec_uri(root: Path):
    import fsspec
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["daily"]["incoming"] = "memory://keel-arrivals/incoming/{date}.parquet"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with fsspec.open(f"memory://keel-arrivals/incoming/{DAY}.parquet", "wb") as handle:
        pd.DataFrame({"customer_id": ["C1"]}).to_parquet(handle)
    try:
        with dg.instance_for_test() as instance:
            [request] = evaluate(
                "incoming_arrived", instance, {"params": ParamsResource(project_dir=str(root))}
            ).run_requests
        assert request.partition_key == DAY
        assert request.tags["keel/file"] == f"memory://keel-arrivals/incoming/{DAY}.parquet"
    finally:
        fsspec.filesystem("memory").rm("/keel-arrivals", recursive=True)
