"""The sensors as the daemon evaluates them: run requests, run keys and cursors (build_sensor_context)."""

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from orchestration.definitions import defs
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from tests.conftest import REPO

PARAMS = ParamsResource(project_dir=str(REPO))


class ChampionIs(ModelRegistry):
    """The registry as the sensor sees it: only which version is champion (no MLflow store needed)."""

    version: int = 1
    reached: float = 0.85

    def alias_version(self, name: str, alias: str) -> int | None:
        return self.version

    def version_info(self, name: str, version: int) -> dict:
        return {"version": version, "tags": {"keel.metric.roc_auc": str(self.reached)}}


def materialize(instance, asset: str, day: str, **metadata) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=day, metadata=metadata))


def drift_event(instance, day: str, drifted: bool, version: int = 1) -> None:
    materialize(
        instance,
        "drift_report",
        day,
        drift_detected=drifted,
        drift_share=0.4 if drifted else 0.0,
        drifted_columns=dg.MetadataValue.json(["monthly_charges"] if drifted else []),
        prediction_drift=drifted,
        estimated_performance_drop=drifted,  # the label-free estimate fell too: a drift that costs
        because="drift (rules fired: estimated performance)" if drifted else "no drift (rules fired: none)",
        model_version=version,
    )


def evaluate(name: str, instance, resources: dict, cursor: str | None = None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, sensor_name=name, definitions=defs
    ) as context:
        return defs.resolve_sensor_def(name).evaluate_tick(context)


def test_retrain_sensor_waits_for_labels_asks_once_per_episode_and_keys_runs_by_episode(tmp_path: Path):
    resources = {"params": PARAMS, "registry": ChampionIs(root=str(tmp_path), params=PARAMS)}
    with dg.instance_for_test() as instance:
        first = evaluate("retrain_on_drift", instance, resources)
        assert not first.run_requests and first.cursor  # nothing yet, but the cursor is saved

        drift_event(instance, "2026-10-14", False)
        drift_event(instance, "2026-10-15", True)
        for day in ("2026-10-13", "2026-10-14", "2026-10-15"):
            materialize(instance, "labels", day)
        waiting = evaluate("retrain_on_drift", instance, resources, first.cursor)
        assert not waiting.run_requests
        assert "waiting for labels (1 of 3 days labelled)" in waiting.skip_message

        for day in ("2026-10-16", "2026-10-17"):
            drift_event(instance, day, True)
            materialize(instance, "labels", day)
        asked = evaluate("retrain_on_drift", instance, resources, waiting.cursor)
        [request] = asked.run_requests
        assert request.run_key == "retrain-drift-2026-10-15"
        # The latest retraining.window_days labelled days (here all five), not only the drifted ones.
        # The night it was asked on (the window is chosen as the new version is used), and a drift:
        # no change of the relation (no since_episode window).
        assert request.run_config == {
            "ops": {
                "training_set": {
                    "config": {
                        "recent_from": "2026-10-13",
                        "recent_to": "2026-10-17",
                        "reference_from": "2026-10-15",
                        "requested_on": "2026-10-17",
                        "relation_changed": False,
                    }
                }
            }
        }
        assert request.tags["keel/recent_days"] == "2026-10-13..2026-10-17"
        assert request.tags["keel/requested_on"] == "2026-10-17"
        assert request.tags["keel/requested_by"] == "1"
        assert "drift_report 2026-10-15: drift (rules fired: estimated performance)" in request.tags["keel/trigger"]
        assert "it costs: the label-free AUC estimate fell" in request.tags["keel/trigger"]

        again = evaluate("retrain_on_drift", instance, resources, asked.cursor)
        assert not again.run_requests and "cooldown: 0 of 7 days" in again.skip_message
        # The daemon launched the request: a cursor reset rebuilds the episode from history and reads
        # the last request from the sensor's runs, so the cooldown still holds.
        instance.add_run(
            dg.DagsterRun(
                job_name="retrain",
                run_id="0" * 8 + "-0000-0000-0000-" + "0" * 12,
                tags={**request.tags, "dagster/sensor_name": "retrain_on_drift", "dagster/run_key": request.run_key},
            )
        )
        restarted = evaluate("retrain_on_drift", instance, resources, None)
        assert (
            not restarted.run_requests
            and "cooldown: 0 of 7 days since the retrain of 2026-10-17" in restarted.skip_message
        )


def test_retrain_sensor_ignores_days_scored_by_an_older_model(tmp_path: Path):
    resources = {"params": PARAMS, "registry": ChampionIs(root=str(tmp_path), params=PARAMS, version=2)}
    with dg.instance_for_test() as instance:
        for day in ("2026-10-15", "2026-10-16", "2026-10-17"):
            drift_event(instance, day, True, version=1)
            materialize(instance, "labels", day)
        result = evaluate("retrain_on_drift", instance, resources)
        assert not result.run_requests and "no open drift, decay or collapse episode" in result.skip_message


def test_a_fall_far_below_the_auc_the_champion_reached_at_its_gate_is_a_collapse(tmp_path: Path):
    resources = {"params": PARAMS, "registry": ChampionIs(root=str(tmp_path), params=PARAMS)}
    with dg.instance_for_test() as instance:
        for n, auc in ((10, 0.86), (11, 0.85), (12, 0.86), (13, 0.74), (14, 0.73), (15, 0.74)):
            day = f"2026-10-{n}"
            materialize(
                instance,
                "model_performance",
                day,
                roc_auc=auc,
                auc_se=0.01,
                model_holdout_auc=0.85,
                degraded=auc < 0.80,
                model_version=1,
            )
            materialize(instance, "labels", day)
        [request] = evaluate("retrain_on_drift", instance, resources).run_requests
        # Two days in a row far below the 0.85 it reached at its gate (the registry's keel.metric.roc_auc).
        # (It waits for six labelled days: five day-to-day differences measure the noise between days.)
        assert request.run_key == "retrain-collapse-2026-10-14"
        assert (
            "collapse: labelled ROC AUC 0.730, 0.740 on its latest 2 days vs 0.850 at its gate"
            in request.tags["keel/trigger"]
        )


def collapsed_days(instance) -> None:
    for n, auc in ((10, 0.86), (11, 0.85), (12, 0.86), (13, 0.74), (14, 0.73), (15, 0.74)):
        day = f"2026-10-{n}"
        materialize(
            instance, "model_performance", day, roc_auc=auc, auc_se=0.01, model_holdout_auc=0.85, model_version=1
        )
        materialize(instance, "labels", day)


def daemon_origin(job: str) -> RemoteJobOrigin:
    """The origin of a run launched from the code location (the daemon, the UI): only such a run can be retried."""
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file="orchestration/definitions.py"), location_name="keel"
    )
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job)


def training_run(instance, job: str, run_id: str, status: dg.DagsterRunStatus, **tags) -> None:
    origin = daemon_origin(job)
    instance.add_run(dg.DagsterRun(job_name=job, run_id=run_id, status=status, tags=tags, remote_job_origin=origin))


RUN_ID = "0" * 8 + "-0000-0000-0000-" + "1" * 12


@pytest.mark.parametrize(
    "job, status, tags, waits_for",
    [
        ("retrain", dg.DagsterRunStatus.STARTED, {}, "is started"),
        ("retrain", dg.DagsterRunStatus.STARTING, {}, "is starting"),
        ("retrain", dg.DagsterRunStatus.FAILURE, {"dagster/will_retry": "true"}, "failed and is about to be retried"),
        ("train_model", dg.DagsterRunStatus.STARTED, {}, "is started"),  # a person training by hand
    ],
)
def test_no_second_training_is_asked_while_one_runs_or_waits_for_its_retry(
    tmp_path: Path, job, status, tags, waits_for
):
    resources = {"params": PARAMS, "registry": ChampionIs(root=str(tmp_path), params=PARAMS)}
    with dg.instance_for_test() as instance:
        collapsed_days(instance)
        training_run(instance, job, RUN_ID, status, **tags)
        held = evaluate("retrain_on_drift", instance, resources)
        assert not held.run_requests and f"{job} run {RUN_ID} {waits_for}" in held.skip_message
        assert "collapse" in held.skip_message  # what it waits to ask, named
        # It ended (gone from the runs), or its retry was launched and finished: the evidence still asks.
        if status == dg.DagsterRunStatus.FAILURE:
            retry = {"dagster/parent_run_id": RUN_ID}
            training_run(instance, job, "0" * 8 + "-0000-0000-0000-" + "9" * 12, dg.DagsterRunStatus.SUCCESS, **retry)
        else:
            instance.delete_run(RUN_ID)
        [request] = evaluate("retrain_on_drift", instance, resources, held.cursor).run_requests
        assert request.run_key == "retrain-collapse-2026-10-14"


def test_labels_sensor_asks_for_arrived_labels_of_scored_days_only(tmp_path: Path):
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "data" / "labels").mkdir(parents=True)
    for day in ("2026-10-01", "2026-10-02", "2026-10-03"):
        pd.DataFrame({"customer_id": ["C1"], "churn": ["No"]}).to_parquet(root / "data" / "labels" / f"{day}.parquet")
    (root / "data" / "labels" / "notes.txt").write_text("not a day")
    resources = {"params": ParamsResource(project_dir=str(root))}
    with dg.instance_for_test() as instance:
        for day in ("2026-10-01", "2026-10-02"):
            materialize(instance, "batch_predictions", day)
        materialize(instance, "model_performance", "2026-10-01")  # already taken in, after the file arrived
        result = evaluate("labels_arrived", instance, resources)
        assert [r.partition_key for r in result.run_requests] == ["2026-10-02"]
        assert result.run_requests[0].run_key.startswith("labels-2026-10-02-")  # keyed by the file's version
        assert defs.resolve_sensor_def("labels_arrived").job_name == "label_feedback"


def test_a_drift_report_or_model_performance_reported_by_hand_is_named_and_never_stops_the_retrain_sensor(
    tmp_path: Path,
):
    """A materialization reported by hand (the UI's "Report materialization", no metadata) or without a
    partition is named in the tick and passed over; before, every tick failed on it for good."""
    resources = {"params": PARAMS, "registry": ChampionIs(root=str(tmp_path), params=PARAMS)}
    with dg.instance_for_test() as instance:
        materialize(instance, "drift_report", "2026-10-14")  # by hand: no metadata
        materialize(instance, "model_performance", "2026-10-14")
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="drift_report", metadata={"drift_detected": True, "model_version": 1})
        )  # no partition
        named = evaluate("retrain_on_drift", instance, resources)
        assert not named.run_requests
        assert (
            "drift_report 2026-10-14" in named.skip_message
            and "no drift_detected, no model_version" in named.skip_message
        )
        assert "model_performance 2026-10-14" in named.skip_message and "no roc_auc" in named.skip_message
        assert "drift_report (no partition)" in named.skip_message
        for day in ("2026-10-15", "2026-10-16", "2026-10-17"):
            drift_event(instance, day, True)
            materialize(instance, "labels", day)
        [request] = evaluate("retrain_on_drift", instance, resources, named.cursor).run_requests
        assert request.run_key == "retrain-drift-2026-10-15"  # the real drift is acted on


@pytest.mark.parametrize(
    "cursor", ["not json", "[]", '"text"', '{"after": {"drift": "x"}}', '{"after": {"drift": -1.5}}']
)
def test_a_retrain_sensor_cursor_edited_into_garbage_is_rebuilt_from_history(tmp_path: Path, cursor: str):
    """A cursor set by hand in the UI that the policy cannot read rebuilds the state from history, as an
    older policy's cursor does; before, every tick failed on it until it was reset."""
    resources = {"params": PARAMS, "registry": ChampionIs(root=str(tmp_path), params=PARAMS)}
    with dg.instance_for_test() as instance:
        for day in ("2026-10-15", "2026-10-16", "2026-10-17"):
            drift_event(instance, day, True)
            materialize(instance, "labels", day)
        [request] = evaluate("retrain_on_drift", instance, resources, cursor).run_requests
        assert request.run_key == "retrain-drift-2026-10-15"
