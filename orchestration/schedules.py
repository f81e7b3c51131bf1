"""The nightly scoring schedule. There is deliberately no training schedule: retraining follows drift."""

import dagster as dg

from orchestration.jobs import nightly_scoring

nightly_scoring_schedule = dg.build_schedule_from_partitioned_job(
    nightly_scoring,
    name="nightly_scoring_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    description=(
        "Every night at 02:00 (UTC): checks, scores and drift-reports the previous day's partition "
        "(incoming_data -> batch_predictions -> drift_report). Missed or past days: backfill them."
    ),
)

SCHEDULES = [nightly_scoring_schedule]
