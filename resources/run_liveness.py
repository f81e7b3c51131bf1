"""Whether a run's process is still alive, from the pid Dagster recorded when the run began executing.

Every run of this project runs its steps in one process (the in-process executor), which logs
"Executing steps in process (pid: N)"; a run launched through the instance also logs "Started process
for run (pid: N)". The instance keeps its runs in SQLite on this machine, so that pid is a process
here: gone (or a zombie, or a newer process that reused the number) means the run was killed.
"""

from __future__ import annotations

import dagster as dg
import psutil
from dagster._core.events import DagsterEventType

START_SLACK_SECONDS = 2.0  # clock granularity between a process's start time and the event it logged


def run_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was logged) of the process that runs `run_id`'s steps, the latest one logged."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key is not None:  # a step's own subprocess ends with the step
            continue
        pid = event.engine_event_data.metadata.get("pid") if event.engine_event_data else None
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value), record.event_log_entry.timestamp
    return None


def process_gone(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Why the run's process is known to be gone, or None when it is alive or no pid was logged yet."""
    found = run_process(instance, run_id)
    if found is None:
        return None
    pid, logged_at = found
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return f"its process (pid {pid}) has exited (a zombie): it was killed or crashed"
        if process.create_time() > logged_at + START_SLACK_SECONDS:
            return f"its process (pid {pid}) has exited (the pid now belongs to a newer process)"
    except psutil.NoSuchProcess:
        return f"its process (pid {pid}) no longer exists: it was killed or crashed"
    except psutil.AccessDenied:
        return None  # another user's live process
    return None
