"""Simulated nights: the daily files arrive, the nightly job runs, the sensors tick and are obeyed.

The demo and the end-to-end tests tell the same story with this module. Night d writes day d's
snapshot and the labels of day d - label_delay_days (ml/simulate.py), then evaluates the sensors
`incoming_arrived` (which asks for day d's `nightly_scoring` run), `labels_arrived` and
`retrain_on_drift` as the Dagster daemon would (cursor kept between ticks, run key and sensor tags on
the runs) and runs what they ask for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"


def repository_label() -> str:
    """The code location as the daemon tags a sensor's runs; the UI lists a sensor's runs by it."""
    (entry,) = yaml.safe_load(WORKSPACE.read_text(encoding="utf-8"))["load_from"]
    return f"__repository__@{entry['python_module']['location_name']}"


@dataclass
class Night:
    day: str
    success: bool = False
    version: int | None = None
    drift_share: float | None = None
    verdict: str = "-"
    drifted: list[str] = field(default_factory=list)
    retrain_requests: list[dg.RunRequest] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def launch(defs: dg.Definitions, job: str, instance, request: dg.RunRequest | None = None, sensor: str = "", **kwargs):
    """Run a job in this process; for a sensor's request, with the tags the daemon would add."""
    tags: dict[str, str] = {}
    if request is not None:
        tags = {
            **request.tags,
            "dagster/run_key": request.run_key or "",
            "dagster/sensor_name": sensor,
            ".dagster/repository": repository_label(),
        }
        kwargs.setdefault("run_config", request.run_config or {})
        if request.partition_key:
            kwargs["partition_key"] = request.partition_key
    run_config = {**QUIET, **kwargs.pop("run_config", {})}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, run_config=run_config, tags=tags, raise_on_error=False, **kwargs
    )


def tick(defs: dg.Definitions, name: str, instance, resources: dict, cursors: dict) -> list[dg.RunRequest]:
    """One sensor evaluation; the cursor is kept in `cursors` between ticks, as the daemon keeps it."""
    with dg.build_sensor_context(
        instance=instance, cursor=cursors.get(name), resources=resources, sensor_name=name, definitions=defs
    ) as context:
        data = defs.resolve_sensor_def(name).evaluate_tick(context)
    cursors[name] = data.cursor
    return list(data.run_requests or [])


def run_nights(
    root: Path,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    resources: dict,
    on_night: Callable[[int, Night], None] = lambda number, night: None,
    start_date: dt.date | None = None,
) -> list[Night]:
    """Simulate `simulation.days` nights of the project at `root` (a champion must exist), from
    `start_date` (default: params.yaml's daily.start_date)."""
    import ml.io
    from assets.batch_predictions import batch_predictions
    from assets.drift_report import drift_report
    from assets.registered_model import registered_model
    from ml.params import load_params
    from ml.simulate import simulate_day, unseen_rows, write_labels, write_snapshot
    from orchestration.history import latest_metadata

    params = load_params(root / "params.yaml")
    spec, daily, simulation = params.dataset, params.daily, params.simulation
    if start_date is not None:
        daily = daily.model_copy(update={"start_date": start_date})
    raw = unseen_rows(ml.io.read_parquet(params.raw_uri), params)
    cursors: dict[str, str | None] = {}
    nights = []
    for number in range(1, simulation.days + 1):
        night = Night(str(daily.date(number)))
        write_snapshot(simulate_day(raw, spec, simulation, number)[0], daily, number, root)
        arriving = number - simulation.label_delay_days
        if arriving >= 1:
            write_labels(simulate_day(raw, spec, simulation, arriving)[1], daily, arriving, root)
        scoring = tick(defs, "incoming_arrived", instance, resources, cursors)
        night.success = [r.partition_key for r in scoring] == [night.day] and all(
            launch(defs, "nightly_scoring", instance, request, sensor="incoming_arrived").success for request in scoring
        )
        scored = latest_metadata(instance, batch_predictions.key, night.day)
        drift = latest_metadata(instance, drift_report.key, night.day)
        night.version, night.drift_share = scored.get("model_version"), drift.get("drift_share")
        night.verdict = drift.get("verdict", "-" if night.success else "failed")
        night.drifted = list(drift.get("drifted_columns", []))
        for request in tick(defs, "labels_arrived", instance, resources, cursors):
            launch(defs, "label_feedback", instance, request, sensor="labels_arrived")
        for request in tick(defs, "retrain_on_drift", instance, resources, cursors):
            night.retrain_requests.append(request)
            night.events.append(f"sensor: retrain on {request.tags['keel/recent_days']}")
            retrained = launch(defs, "retrain", instance, request, sensor="retrain_on_drift")
            registered = latest_metadata(instance, registered_model.key)
            promoted = retrained.success and registered.get("registered")
            night.events.append(f"v{registered['version']} is champion" if promoted else "the retrain promoted nothing")
        nights.append(night)
        on_night(number, night)
    return nights
