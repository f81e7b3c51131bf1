"""Sensors: retraining on drift (not on a calendar); the arrival sensors and the alerts, listed in SENSORS."""

import math

import dagster as dg

from assets.drift_report import drift_report
from assets.labels import labels
from assets.model_performance import model_performance
from orchestration.alerts import ALERT_SENSORS, will_retry
from orchestration.arrival_sensors import incoming_arrived, labels_arrived
from orchestration.jobs import retrain, train_model
from orchestration.request_log_alerts import alert_on_request_log
from orchestration.retrain_policy import Event, State, decide, observe, training_set_config
from orchestration.sensor_guard import alerting
from resources.params import ParamsResource
from resources.registry import ModelRegistry

PAGE = 1000


# What a materialization must carry to be read as an event; one reported by hand (the UI's "Report
# materialization") carries none of it.
NEEDED = {
    "drift": ("drift_detected", "model_version"),  # and, without `because`, the figures it is made of
    "performance": ("roc_auc", "model_version"),
}


def _events(instance: dg.DagsterInstance, after: dict[str, int], unread: list[str] | None = None) -> list[Event]:
    """Every drift_report and model_performance materialization after the cursor, page by page; one
    that cannot be read as an event (no partition, or without the metadata its asset writes) is passed
    over and named in `unread`."""
    events = []
    for key, kind in ((drift_report.key, "drift"), (model_performance.key, "performance")):
        since = after.get(kind, 0)
        while True:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=since), limit=PAGE, ascending=True
            ).records
            for record in records:
                try:
                    events.append(_event(record, kind))
                except (KeyError, TypeError, ValueError) as error:
                    error = f"no {error} in its metadata" if isinstance(error, KeyError) else error
                    if unread is not None:
                        unread.append(
                            f"{key.to_user_string()} {record.partition_key or '(no partition)'} "
                            f"(event {record.storage_id}): {error}; passed over (reported by hand?)"
                        )
            if len(records) < PAGE:
                break
            since = records[-1].storage_id
    return events


def _event(record, kind: str) -> Event:
    metadata = {name: value.value for name, value in record.asset_materialization.metadata.items()}
    day = record.partition_key
    if not day:
        raise ValueError("no partition")
    missing = [name for name in NEEDED[kind] if name not in metadata]
    if missing:
        raise ValueError(f"no {', no '.join(missing)} in its metadata")
    if kind == "drift":
        # The verdict's own line names the rules that fired, with their figures.
        detail = f"drift_report {day}: " + (
            str(metadata["because"])
            if metadata.get("because")
            else f"drifted columns carry {metadata['drift_share']:.2f} of the importance "
            f"({', '.join(metadata['drifted_columns']) or 'none'}), prediction drift {metadata['prediction_drift']}"
        )
        return Event(
            record.storage_id,
            "drift",
            day,
            bool(metadata["drift_detected"]),
            int(metadata["model_version"]),
            detail,
            estimated_drop=bool(metadata.get("estimated_performance_drop", False)),
        )
    return Event(
        record.storage_id,
        "performance",
        day,
        bool(metadata.get("degraded", False)),
        int(metadata["model_version"]),
        f"model_performance {day}",
        roc_auc=float(metadata["roc_auc"]),
        auc_se=float(metadata["auc_se"]) if "auc_se" in metadata else None,
        reached_auc=_finite(metadata.get("model_holdout_auc")),
    )


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def reached_auc(registry: ModelRegistry, version: int | None) -> float | None:
    """The AUC a version reached at its gate, as its registration recorded it (keel.metric.roc_auc)."""
    if version is None:
        return None
    return _finite(registry.version_info(registry.model_name, version)["tags"].get("keel.metric.roc_auc"))


REQUESTED_ON = "keel/requested_on"
REQUESTED_BY = "keel/requested_by"  # the champion version when the request was made


def last_request(instance: dg.DagsterInstance) -> tuple[str | None, int | None]:
    """The day of this sensor's latest retrain request and the champion then, from its runs (survives
    a cursor reset)."""
    runs = instance.get_runs(
        dg.RunsFilter(job_name=retrain.name, tags={"dagster/sensor_name": "retrain_on_drift"}), limit=1
    )
    if not runs:
        return None, None
    by = runs[0].tags.get(REQUESTED_BY, "")
    return runs[0].tags.get(REQUESTED_ON), int(by) if by.isdigit() else None


IN_FLIGHT = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def retrain_in_flight(instance: dg.DagsterInstance) -> str | None:
    """Why a training is still under way (a retrain, or a train_model a person started: running, queued, or
    failed with its retry not yet launched), else None."""
    for job in (retrain.name, train_model.name):
        running = instance.get_runs(dg.RunsFilter(job_name=job, statuses=IN_FLIGHT), limit=1)
        if running:
            return f"{job} run {running[0].run_id} is {running[0].status.value.lower()}"
        failed = instance.get_runs(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.FAILURE]), limit=1)
        if (
            failed
            and will_retry(failed[0], instance)
            and not instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": failed[0].run_id}), limit=1)
        ):
            return f"{job} run {failed[0].run_id} failed and is about to be retried"
    return None


@dg.sensor(
    job=retrain,
    minimum_interval_seconds=60,
    description=(
        "Every minute (once turned on); retrains when it buys AUC, not on a calendar: when the champion's "
        "labelled AUC collapses far below what it reached at its gate (at once, even within the cooldown), "
        "decays beyond the noise between days, or its drift_report says drift and the drifted days cost AUC "
        "(labels, or the label-free estimate). It launches the retrain job on the latest retraining.window_days "
        "labelled days. A drift that costs nothing spends no retrain. A new champion starts afresh; a retrain "
        "that did not change the champion is asked again after retraining.cooldown_days. One training at a "
        "time: while a retrain or a train_model runs, is queued or waits for its retry, the request waits."
    ),
)
@alerting
def retrain_on_drift(context: dg.SensorEvaluationContext, params: ParamsResource, registry: ModelRegistry):
    settings = params.load().retraining
    state = State.from_cursor(context.cursor)
    champion = registry.champion()
    reached = reached_auc(registry, champion) if champion != state.champion or state.reached is None else None
    unread: list[str] = []
    events = _events(context.instance, state.after, unread)
    state, notes = observe(state, events, champion, settings, reached)
    labelled = sorted(context.instance.get_materialized_partitions(labels.key))
    decision = decide(state, labelled, settings, *last_request(context.instance))
    for note in notes:  # episodes opening and closing; a quiet tick's reason is its skip message
        context.log.info(note)
    for problem in unread:  # named on every tick from a cursor before it
        context.log.warning(f"not read: {problem}")
    if decision.retrain is None:
        note = f" (not read: {'; '.join(unread)[:600]})" if unread else ""
        return dg.SensorResult(skip_reason="; ".join(decision.notes) + note, cursor=decision.state.to_cursor())
    busy = retrain_in_flight(context.instance)
    if busy:  # one retrain at a time: the request is made again once it ended, if the evidence still asks
        return dg.SensorResult(skip_reason=f"{decision.notes[0]}; waits: {busy}"[:1000], cursor=state.to_cursor())
    request = decision.retrain
    context.log.info(decision.notes[0])
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=request["run_key"],
                run_config={"ops": {"training_set": {"config": training_set_config(request)}}},
                tags={
                    "keel/trigger": request["trigger"][:200],
                    "keel/recent_days": f"{request['recent_from']}..{request['recent_to']}",
                    REQUESTED_ON: request["requested_on"],
                    **({REQUESTED_BY: str(decision.state.champion)} if decision.state.champion is not None else {}),
                },
            )
        ],
        cursor=decision.state.to_cursor(),
    )


SENSORS = [incoming_arrived, labels_arrived, retrain_on_drift, *ALERT_SENSORS, alert_on_request_log]
