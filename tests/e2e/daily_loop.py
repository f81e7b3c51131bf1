"""The daily loop under the real Dagster daemon, as both instances run it (the local one in test_daemon.py,
the team one in test_team.py): with the sensors on, a drifted day's snapshot and its labels arrive; the
daemon launches and finishes the day's scoring (incoming_arrived), its label feedback (labels_arrived)
and the retrain the drift asks for (retrain_on_drift), whose candidate becomes the next champion."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from tests.conftest import set_params

DEADLINE_SECONDS = 900  # the team instance took 418 s at a load average of 50 on two cores
# The price rise from the first day, and a retrain as soon as one drifted day's labels show its cost
# (judged on the day's size-based standard error: no days yet to measure the spread between days).
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
    "retraining": {"min_labelled_days": 1, "cooldown_days": 0, "spread_min_days": 1},
}


def tell_the_story(project: Path) -> None:
    set_params(project, **STORY)


def write_day_and_labels(project: Path, day: int) -> str:
    """Day `day`'s snapshot and labels (labels_arrived waits until the day is scored); its date."""
    import ml.io
    from ml.params import load_params
    from ml.simulate import simulate_day, unseen_rows, write_labels, write_snapshot

    params = load_params(project / "params.yaml")
    rows = unseen_rows(ml.io.read_parquet(params.raw_uri), params)
    snapshot, labels = simulate_day(rows, params.dataset, params.simulation, day)
    write_snapshot(snapshot, params.daily, day, project)
    write_labels(labels, params.daily, day, project)
    return str(params.daily.date(day))


def finished(instance: dg.DagsterInstance, job: str, sensor: str, day: str | None = None) -> dg.DagsterRun | None:
    tags = {"dagster/sensor_name": sensor, **({"dagster/partition": day} if day else {})}
    done = [r for r in instance.get_runs(dg.RunsFilter(job_name=job, tags=tags)) if r.is_finished]
    return done[0] if done else None


@dataclass
class DailyLoop:
    scored: dg.DagsterRun
    labelled: dg.DagsterRun
    retrained: dg.DagsterRun


def wait_for_the_daily_loop(
    instance: dg.DagsterInstance, day: str, logs: Callable[[], str], alive: Callable[[], bool]
) -> DailyLoop:
    """The day's three sensor-launched runs, once each has finished (or fail with the daemon's log)."""
    begin = time.monotonic()
    scored = labelled = retrained = None
    while time.monotonic() - begin < DEADLINE_SECONDS and not (scored and labelled and retrained):
        assert alive(), logs()[-4000:]
        scored = scored or finished(instance, "nightly_scoring", "incoming_arrived", day)
        labelled = labelled or finished(instance, "label_feedback", "labels_arrived", day)
        retrained = retrained or finished(instance, "retrain", "retrain_on_drift")
        time.sleep(3)
    assert scored and labelled and retrained, (
        f"scored={scored and scored.status} labelled={labelled and labelled.status} "
        f"retrained={retrained and retrained.status}\n{logs()[-4000:]}"
    )
    print(
        f"daemon: scored, labelled and retrained on {day} in {time.monotonic() - begin:.0f}s after the sensors started"
    )
    return DailyLoop(scored, labelled, retrained)


def assert_the_daily_loop(
    instance: dg.DagsterInstance, day: str, loop: DailyLoop, logs: str, champion_before: int
) -> None:
    """What the day's runs must have done, on whichever instance ran them."""
    assert loop.retrained.status == dg.DagsterRunStatus.SUCCESS, logs[-4000:]
    assert loop.retrained.tags["dagster/run_key"] == f"retrain-drift-{day}"
    drift = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), asset_partitions=[day]), limit=1
    ).records
    assert drift[0].asset_materialization.metadata["verdict"].value == "drift"
    registered = instance.fetch_materializations(dg.AssetKey("registered_model"), limit=1).records
    assert registered[0].asset_materialization.metadata["champion_version"].value == champion_before + 1
    assert loop.scored.status == dg.DagsterRunStatus.SUCCESS and loop.scored.tags["dagster/partition"] == day
    assert loop.scored.tags["dagster/run_key"].startswith(f"incoming-{day}-")
    assert loop.labelled.status == dg.DagsterRunStatus.SUCCESS and loop.labelled.tags["dagster/partition"] == day
    assert loop.labelled.tags["dagster/run_key"].startswith(f"labels-{day}-")
    performance = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("model_performance"), asset_partitions=[day]), limit=1
    ).records
    assert performance and performance[0].asset_materialization.metadata["roc_auc"].value > 0.7
    assert "already completed with run keys" not in logs  # nothing was dropped by a reused run key
