"""The nightly scoring schedule: the deadline for yesterday's file. There is deliberately no training
schedule: retraining follows drift.

Days are scored when their file arrives (the sensor incoming_arrived); at 02:00 the schedule asks
for the previous day only if its file is there and that version was not scored yet, so a night
without a file is a skip that names the file, not a failed run.
"""

import datetime as dt

import dagster as dg

from assets.drift_report import drift_report
from orchestration.arrivals import not_taken_in, one
from orchestration.jobs import nightly_scoring
from orchestration.sensor_guard import alerting
from resources.params import ParamsResource


@dg.schedule(
    job=nightly_scoring,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    name="nightly_scoring_schedule",
    description=(
        "Every night at 02:00 (UTC): checks, scores and drift-reports the previous day's partition "
        "(incoming_data -> batch_predictions -> drift_report) unless the sensor incoming_arrived "
        "already did; skips, naming the file, when the day's file has not arrived. Older days: backfill them."
    ),
)
@alerting
def nightly_scoring_schedule(context: dg.ScheduleEvaluationContext, params: ParamsResource):
    now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    day, settings = str((now - dt.timedelta(days=1)).date()), params.load()
    if day < str(settings.daily.start_date):
        return dg.SkipReason(f"{day} is before daily.start_date {settings.daily.start_date}")
    uri = settings.incoming_uri(day)
    arrival = one(uri, day)
    if arrival is None:
        return dg.SkipReason(
            f"no incoming file for {day}: {uri} does not exist; the sensor incoming_arrived scores the day "
            "when it arrives"
        )
    todo, skipped = not_taken_in(context.instance, [arrival], "incoming", drift_report.key)
    if not todo:
        return dg.SkipReason(skipped[0])
    return dg.RunRequest(partition_key=day, run_key=arrival.run_key("incoming"), tags=arrival.tags())


SCHEDULES = [nightly_scoring_schedule]
