"""Sensors on the daily folders: a day is scored when its file arrives, and evaluated when its labels do.

Each run is keyed by the file's version (orchestration/arrivals.py), so a corrected or re-delivered
file runs again, and a tick that launches nothing says which days it skipped and why.
"""

import dagster as dg

from assets.batch_predictions import batch_predictions
from assets.drift_report import drift_report
from assets.model_performance import model_performance
from assets.partitions import DAILY
from orchestration.arrivals import arrived, not_taken_in, skip_message, still_being_written
from orchestration.jobs import label_feedback, nightly_scoring
from orchestration.sensor_guard import alerting
from resources.params import ParamsResource


def _requests(todo, prefix: str) -> list[dg.RunRequest]:
    return [dg.RunRequest(partition_key=a.day, run_key=a.run_key(prefix), tags=a.tags()) for a in todo]


@dg.sensor(
    job=nightly_scoring,
    minimum_interval_seconds=60,
    description=(
        "Every minute (once turned on): finds days whose snapshot file has arrived (params.yaml "
        "daily.incoming, any path or fsspec URI) and launches the nightly_scoring job for each, keyed "
        "by the file's version: a file that lands late or is corrected is scored when it lands. The "
        "02:00 nightly_scoring_schedule is the deadline for a day this sensor did not score."
    ),
)
@alerting
def incoming_arrived(context: dg.SensorEvaluationContext, params: ParamsResource):
    settings = params.load()
    last = DAILY.get_last_partition_key()  # yesterday: a day's partition opens once the day is over
    start = str(settings.daily.start_date)
    misnamed: list[str] = []
    files = arrived(settings.incoming_uri("{date}"), misnamed)
    for problem in misnamed:  # named on every tick, launches or not, until the file is renamed
        context.log.warning(f"not a day's file: {problem}")
    early = [
        f"{a.day}: not a partition yet (scored once the day is over, UTC)" for a in files if not last or a.day > last
    ]
    before = [f"{a.day}: before daily.start_date {start}" for a in files if a.day < start]
    days = [a for a in files if a.day >= start and last and a.day <= last]
    todo, skipped = not_taken_in(context.instance, days, "incoming", drift_report.key)
    todo, writing = still_being_written(todo)
    if not todo:
        return dg.SkipReason(skip_message("snapshot files", before + skipped + writing + early + misnamed))
    return _requests(todo, "incoming")


@dg.sensor(
    job=label_feedback,
    minimum_interval_seconds=60,
    description=(
        "Every minute (once turned on): finds days whose labels file has arrived (params.yaml "
        "daily.labels) and that were scored, and launches the label_feedback job for each (labels "
        "and model_performance of that day), keyed by the file's version: a corrected or re-delivered "
        "labels file runs again and updates the day's labels and model_performance."
    ),
)
@alerting
def labels_arrived(context: dg.SensorEvaluationContext, params: ParamsResource):
    misnamed: list[str] = []
    files = arrived(params.load().labels_uri("{date}"), misnamed)
    for problem in misnamed:
        context.log.warning(f"not a day's file: {problem}")
    scored = context.instance.get_materialized_partitions(batch_predictions.key)
    unscored = [f"{a.day}: labels arrived but the day is not scored yet" for a in files if a.day not in scored]
    todo, skipped = not_taken_in(
        context.instance, [a for a in files if a.day in scored], "labels", model_performance.key
    )
    todo, writing = still_being_written(todo)
    if not todo:
        return dg.SkipReason(skip_message("labels files", skipped + writing + unscored + misnamed))
    return _requests(todo, "labels")
