"""Sensors: retraining on drift (not on a calendar); the arrival sensors and the alerts, listed in SENSORS."""

import dagster as dg

from assets.drift_report import drift_report
from assets.labels import labels
from assets.model_performance import model_performance
from orchestration.alerts import ALERT_SENSORS
from orchestration.arrival_sensors import incoming_arrived, labels_arrived
from orchestration.jobs import retrain
from orchestration.retrain_policy import Event, State, decide, observe
from resources.params import ParamsResource
from resources.registry import ModelRegistry


def _events(instance: dg.DagsterInstance, after: int) -> list[Event]:
    events = []
    for key, kind, flag in (
        (drift_report.key, "drift", "drift_detected"),
        (model_performance.key, "performance", "degraded"),
    ):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1000, ascending=True
        ).records
        for record in records:
            metadata = record.asset_materialization.metadata
            detail = (
                f"drift share {metadata['drift_share'].value:.2f}, drifted {metadata['drifted_columns'].value}, "
                f"prediction drift {metadata['prediction_drift'].value}"
                if kind == "drift"
                else f"ROC AUC {metadata['roc_auc'].value:.3f} vs {metadata['model_holdout_auc'].value:.3f} on the holdout"
            )
            events.append(
                Event(
                    storage_id=record.storage_id,
                    kind=kind,
                    day=record.partition_key,
                    bad=bool(metadata[flag].value),
                    model_version=int(metadata["model_version"].value),
                    detail=f"{key.to_user_string()} {record.partition_key}: {detail}",
                )
            )
    return events


@dg.sensor(
    job=retrain,
    minimum_interval_seconds=60,
    description=(
        "Every minute (once turned on); retrains on drift, not on a calendar: when a drift_report says drift, or a day's "
        "model_performance falls below the champion's holdout AUC by retraining.max_auc_drop, it "
        "waits until retraining.min_labelled_days of the shifted days have labels and launches the "
        "retrain job on them. One retrain per episode (run key = episode), none within "
        "retraining.cooldown_days of the last."
    ),
)
def retrain_on_drift(context: dg.SensorEvaluationContext, params: ParamsResource, registry: ModelRegistry):
    state = State.from_cursor(context.cursor)
    state, notes = observe(state, _events(context.instance, state.after), registry.champion())
    labelled = sorted(context.instance.get_materialized_partitions(labels.key))
    decision = decide(state, labelled, params.load().retraining)
    for note in notes:  # episodes opening and closing; a quiet tick's reason is its skip message
        context.log.info(note)
    if decision.retrain is None:
        return dg.SensorResult(skip_reason="; ".join(decision.notes), cursor=decision.state.to_cursor())
    request = decision.retrain
    context.log.info(decision.notes[0])
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=request["run_key"],
                run_config={
                    "ops": {
                        "training_set": {
                            "config": {"recent_from": request["recent_from"], "recent_to": request["recent_to"]}
                        }
                    }
                },
                tags={
                    "keel/trigger": request["trigger"][:200],
                    "keel/recent_days": f"{request['recent_from']}..{request['recent_to']}",
                },
            )
        ],
        cursor=decision.state.to_cursor(),
    )


SENSORS = [incoming_arrived, labels_arrived, retrain_on_drift, *ALERT_SENSORS]
