"""The daily loop under the real Dagster daemon: `dagster-daemon run` in a project copy with its own
Dagster home, the sensors turned on with the CLI, a drifted day's snapshot and its labels written; the
daemon launches and finishes the day's scoring (incoming_arrived), its label feedback (labels_arrived)
and the retrain the drift asks for (retrain_on_drift), whose candidate becomes champion v2."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from tests.conftest import clear_daily_files, run, set_params

BIN = Path(sys.executable).parent
DAY = "2026-10-01"
DEADLINE_SECONDS = 480
# The price rise from the first day, and a retrain as soon as one drifted day has labels.
STORY = {
    "simulation": {
        "scenario": {
            "name": "price_rise",
            "from_day": 1,
            "column": "monthly_charges",
            "factor": 1.25,
            "churn_above_quantile": 0.5,
            "churn_extra_rate": 0.35,
        }
    },
    "retraining": {"min_labelled_days": 1, "cooldown_days": 0},
}


def write_day_and_labels(project: Path) -> None:
    import ml.io
    from ml.params import load_params
    from ml.simulate import simulate_day, unseen_rows, write_labels, write_snapshot

    params = load_params(project / "params.yaml")
    rows = unseen_rows(ml.io.read_parquet(params.raw_uri), params)
    snapshot, labels = simulate_day(rows, params.dataset, params.simulation, 1)
    write_snapshot(snapshot, params.daily, 1, project)
    write_labels(labels, params.daily, 1, project)  # labels_arrived waits until the day is scored


def finished(instance: dg.DagsterInstance, job: str, sensor: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(dg.RunsFilter(job_name=job, tags={"dagster/sensor_name": sensor}))
    done = [r for r in runs if r.is_finished]
    return done[0] if done else None


def test_the_daemon_scores_an_arrived_day_takes_its_labels_in_and_retrains_on_its_drift(trained_project: Path):
    project, home = trained_project, trained_project / "var" / "dagster"
    clear_daily_files(project)
    set_params(project, **STORY)
    env = {"DAGSTER_HOME": str(home)}
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    full_env.pop("KEEL_ALERT_WEBHOOK_URL", None)
    log = (project / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=project,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        write_day_and_labels(project)
        started = run([str(BIN / "dagster"), "sensor", "start", "-w", "workspace.yaml", "--start-all"], project, env)
        assert "Started all sensors" in started.stdout + started.stderr, started.stdout + started.stderr
        begin = time.monotonic()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            scored = labelled = retrained = None
            while time.monotonic() - begin < DEADLINE_SECONDS and not (scored and labelled and retrained):
                assert daemon.poll() is None, (project / "daemon.log").read_text()[-4000:]
                scored = scored or finished(instance, "nightly_scoring", "incoming_arrived")
                labelled = labelled or finished(instance, "label_feedback", "labels_arrived")
                retrained = retrained or finished(instance, "retrain", "retrain_on_drift")
                time.sleep(3)
            logs = (project / "daemon.log").read_text()
            assert scored and labelled and retrained, (
                f"scored={scored and scored.status} labelled={labelled and labelled.status} "
                f"retrained={retrained and retrained.status}\n{logs[-4000:]}"
            )
            assert retrained.status == dg.DagsterRunStatus.SUCCESS, logs[-4000:]
            assert retrained.tags["dagster/run_key"] == f"retrain-drift-{DAY}"
            drift = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), asset_partitions=[DAY]), limit=1
            ).records
            assert drift[0].asset_materialization.metadata["verdict"].value == "drift"
            registered = instance.fetch_materializations(dg.AssetKey("registered_model"), limit=1).records
            assert registered[0].asset_materialization.metadata["champion_version"].value == 2
            assert scored.status == dg.DagsterRunStatus.SUCCESS and scored.tags["dagster/partition"] == DAY
            assert scored.tags["dagster/run_key"].startswith(f"incoming-{DAY}-")
            assert labelled.status == dg.DagsterRunStatus.SUCCESS and labelled.tags["dagster/partition"] == DAY
            assert labelled.tags["dagster/run_key"].startswith(f"labels-{DAY}-")
            performance = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("model_performance"), asset_partitions=[DAY]), limit=1
            ).records
            assert performance and performance[0].asset_materialization.metadata["roc_auc"].value > 0.7
            assert "already completed with run keys" not in logs  # nothing was dropped by a reused run key
            print(
                f"daemon: scored, labelled and retrained on {DAY} in {time.monotonic() - begin:.0f}s after the sensors started"
            )
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
