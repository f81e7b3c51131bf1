"""The instance's run launcher (orchestration/dagster.yaml `run_launcher`): Dagster's default one, plus
a health check of a run's process, so run monitoring fails a run whose process was killed within a
poll interval instead of after `max_runtime_seconds` (6 hours). Without a health check, the daemon can
only time a run out.

It judges every STARTED run of the instance, those a CLI or a test executes in its own process as
well as those the daemon launched: each logs the pid that runs its steps (resources/run_liveness.py).
"""

from __future__ import annotations

from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

from resources.run_liveness import process_gone


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        gone = process_gone(self._instance, run.run_id)
        if gone is None:  # alive, or no process logged yet (the start timeout covers a run that never starts)
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, msg=f"Run {run.run_id}: {gone}")
