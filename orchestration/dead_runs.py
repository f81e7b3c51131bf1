"""fail_dead_runs: a run whose process was killed is marked failed within a minute, not after 6 hours.

Dagster's run monitoring can only time out a STARTED run whose worker it cannot check (the default
run launcher has no health check), so a run killed with `kill -9`, or whose `make ui` was killed, stayed
STARTED until `max_runtime_seconds` and kept its pool slots. This sensor, on by default, checks every
STARTED run's process (resources/run_liveness.py), for runs the daemon launched and runs a CLI or a test
executes alike, and marks the dead ones failed as run monitoring would: run monitoring then frees
their pool slots (`free_slots_after_run_end_seconds`), run retries relaunch the daily jobs, and
alert_on_run_failure reports them. A run executed outside the code location (`dagster job execute`) has
no job origin: the daemon can neither retry it nor hand it to alert_on_run_failure, so this sensor sends
its alert itself.
"""

from __future__ import annotations

import dagster as dg

from orchestration.alerts import failure_text
from orchestration.notify import notify
from resources.run_liveness import process_gone


def fail_runs_whose_process_is_gone(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every STARTED run whose process is gone; the run ids so marked."""
    failed = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        gone = process_gone(instance, run.run_id)
        if gone is None:
            continue
        # Read again: the run may have ended by itself meanwhile.
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.is_finished:
            continue
        instance.report_run_failed(current, f"Run {run.run_id} marked failed: {gone}.")
        failed.append(run.run_id)
    return failed


@dg.sensor(
    name="fail_dead_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every minute (on by default, with the daemon): marks failed every STARTED run whose process is "
        "gone (killed, or its `make ui` was), so its pool slots are freed, the daily jobs' run retries "
        "relaunch it and alert_on_run_failure reports it (a run executed from the command line, which neither "
        "can, it alerts itself); launches nothing."
    ),
)
def fail_dead_runs(context: dg.SensorEvaluationContext):
    failed = fail_runs_whose_process_is_gone(context.instance)
    if not failed:
        return dg.SkipReason("every STARTED run's process is alive")
    for run_id in failed:
        run = context.instance.get_run_by_id(run_id)
        if run is not None and run.remote_job_origin is None:  # no retry and no run-failure sensor will see it
            text = failure_text(context.instance, run, "its process is gone (killed); run outside the code location")
            notify(text, context.log, instance=context.instance, key=f"run-failure:{run_id}")
    return dg.SkipReason(f"marked failed {len(failed)} run(s) whose process is gone: {', '.join(failed)}")


DEAD_RUN_SENSORS = [fail_dead_runs]
