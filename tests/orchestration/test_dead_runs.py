"""Runs that die free what they hold: a run SIGKILLed while holding the alias pool's slot is failed at the
next tick of fail_dead_runs and its slot freed by run monitoring, and the next alias move clears the slot by
itself; a move behind a live holder waits asleep, stops on SIGTERM, and gives up naming the holder.

Each run executes in a process of its own against a real instance (a temporary DAGSTER_HOME with the
project's dagster.yaml), as `dagster job execute` would run it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.test_utils import freeze_time
from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration

from orchestration.dead_runs import fail_dead_runs
from resources.registry import ALIAS_POOL
from tests.conftest import REPO, write_dagster_home

MOVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg
    from resources.alias_slot import alias_slot

    home, flag, wait, hold = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])

    @dg.op
    def move_alias(context):
        with alias_slot(context, wait_seconds=wait):
            flag.write_text(context.run_id)
            time.sleep(hold)

    @dg.job
    def alias_mover():
        move_alias()

    with dg.DagsterInstance.from_config(home) as instance:
        result = alias_mover.execute_in_process(instance=instance, raise_on_error=False)
        if result.success:
            print("moved")
        else:
            failure = result.failure_data_for_node("move_alias")
            print("failed:", failure.user_failure_data.description if failure.user_failure_data else failure.error.message)
    """
)


@pytest.fixture
def home(tmp_path: Path) -> str:
    return str(write_dagster_home(tmp_path / "dagster"))


def start_mover(home: str, flag: Path, wait: float, hold: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", MOVER, home, str(flag), str(wait), str(hold)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def holding(process: subprocess.Popen, flag: Path, timeout: float = 180) -> str:
    """The run id of `process` once its step holds the slot."""
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if process.poll() is not None:
            raise AssertionError(f"the mover exited: {process.communicate()}")
        assert time.monotonic() < deadline, "the mover never took the slot"
        time.sleep(0.2)
    return flag.read_text()


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def outcome(process: subprocess.Popen, timeout: float = 180) -> str:
    out, err = process.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    assert lines, err[-3000:]
    return lines[-1]


def alias_slot_runs(instance: dg.DagsterInstance) -> set[str]:
    return instance.event_log_storage.get_concurrency_info(ALIAS_POOL).active_run_ids


class DaemonContext:
    """What the daemon's monitoring passes ask of their workspace: the instance."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance


def test_a_run_killed_holding_the_alias_slot_is_failed_within_a_tick_and_its_slot_freed(home, tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr("orchestration.dead_runs.notify", lambda text, log, **kwargs: sent.append(text))
    holder = start_mover(home, tmp_path / "holder", wait=60, hold=3600)
    run_id = holding(holder, tmp_path / "holder")
    with dg.DagsterInstance.from_config(home) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
        alive = fail_dead_runs(dg.build_sensor_context(instance=instance))
        assert "alive" in alive.skip_message and instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
        kill(holder)
        # The sensor's tick under the daemon (every minute), then the daemon's concurrency pass.
        ticked = fail_dead_runs(dg.build_sensor_context(instance=instance))
        assert run_id in ticked.skip_message
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert f"pid {holder.pid}) no longer exists" in failure.dagster_event.message
        # Executed outside the code location: no retry and no run-failure sensor will see it, so it is alerted here.
        assert instance.get_run_by_id(run_id).remote_job_origin is None
        assert len(sent) == 1 and f"(run {run_id[:8]})" in sent[0] and "its process is gone" in sent[0], sent
        assert run_id in alias_slot_runs(instance)
        later = time.time() + instance.run_monitoring_settings["free_slots_after_run_end_seconds"] + 5
        with freeze_time(later):
            list(execute_concurrency_slots_iteration(DaemonContext(instance), logging.getLogger("daemon")))
        assert alias_slot_runs(instance) == set()


def test_a_move_behind_a_killed_run_clears_its_slot_without_the_daemon(home, tmp_path):
    holder = start_mover(home, tmp_path / "holder", wait=60, hold=3600)
    dead = holding(holder, tmp_path / "holder")
    kill(holder)
    started = time.monotonic()
    mover = start_mover(home, tmp_path / "mover", wait=600, hold=0)
    assert outcome(mover) == "moved"
    assert time.monotonic() - started < 120  # not the 6 h max_runtime
    with dg.DagsterInstance.from_config(home) as instance:
        run = instance.get_run_by_id(dead)
        assert run.status == dg.DagsterRunStatus.FAILURE  # as run monitoring would have marked it
        assert alias_slot_runs(instance) == set()


def test_a_move_killed_while_waiting_for_the_slot_does_not_block_the_next(home, tmp_path):
    """A move SIGKILLed while it waited leaves its claim first in Dagster's queue for the slot: the next move
    clears it (its process is gone) instead of waiting its whole wait behind no run."""
    holder = start_mover(home, tmp_path / "holder", wait=60, hold=3600)
    holding(holder, tmp_path / "holder")
    waiter = start_mover(home, tmp_path / "waiter", wait=600, hold=0)
    with dg.DagsterInstance.from_config(home) as instance:
        deadline = time.monotonic() + 180
        while not instance.event_log_storage.get_concurrency_info(ALIAS_POOL).pending_run_ids:
            assert time.monotonic() < deadline, "the waiter never queued for the slot"
            time.sleep(0.2)
    kill(waiter)
    kill(holder)
    started = time.monotonic()
    mover = start_mover(home, tmp_path / "mover", wait=90, hold=0)
    assert outcome(mover) == "moved"
    assert time.monotonic() - started < 80
    with dg.DagsterInstance.from_config(home) as instance:
        info = instance.event_log_storage.get_concurrency_info(ALIAS_POOL)
        assert info.active_run_ids == set() and info.pending_run_ids == set()


def test_a_move_behind_a_live_run_sleeps_stops_on_sigterm_and_gives_up_naming_the_holder(home, tmp_path):
    holder = start_mover(home, tmp_path / "holder", wait=60, hold=3600)
    try:
        live = holding(holder, tmp_path / "holder")
        impatient = start_mover(home, tmp_path / "impatient", wait=3, hold=0)
        said = outcome(impatient)
        assert said.startswith(f"failed: gave up after 3 s waiting for the {ALIAS_POOL} pool's slot")
        assert f"held by run {live} (alias_mover, STARTED, step move_alias)" in said

        with dg.DagsterInstance.from_config(home) as instance:
            # The impatient mover's step may still be listed as pending: wait for the waiter's own.
            earlier = {s.run_id for s in instance.event_log_storage.get_concurrency_info(ALIAS_POOL).pending_steps}
        waiter = start_mover(home, tmp_path / "waiter", wait=600, hold=0)
        with dg.DagsterInstance.from_config(home) as instance:
            deadline = time.monotonic() + 180
            while (
                not {s.run_id for s in instance.event_log_storage.get_concurrency_info(ALIAS_POOL).pending_steps}
                - earlier
            ):
                assert time.monotonic() < deadline and waiter.poll() is None, "the waiter never queued"
                time.sleep(0.2)
        process = psutil.Process(waiter.pid)
        before = process.cpu_times()
        time.sleep(3)
        after = process.cpu_times()
        assert (after.user + after.system) - (before.user + before.system) < 1.0  # asleep, not spinning
        sent = time.monotonic()
        waiter.send_signal(signal.SIGTERM)
        out, _ = waiter.communicate(timeout=60)
        assert time.monotonic() - sent < 30
        # Stopped, not moved: killed by the signal, or Dagster turned it into an interrupted, failed run.
        assert waiter.returncode != 0 or out.strip().splitlines()[-1].startswith("failed:"), out[-2000:]
        assert not (tmp_path / "waiter").exists()  # it never moved anything
    finally:
        kill(holder)


# The moments two claims race on SQLite, widened: after Dagster saw a free slot, and after it picked the free
# slot's row but before it wrote its run there, each process waits until the other got as far (or 4 s).
CLAIM_RACER = textwrap.dedent(
    """
    import contextlib, sys, time
    from pathlib import Path
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    sync, me = Path(sys.argv[2]).parent, Path(sys.argv[2]).name

    def meet(moment):
        (sync / f"{moment}-{me}").write_text("")
        deadline = time.monotonic() + 4
        while len(list(sync.glob(f"{moment}-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    looked, connect = SqliteEventLogStorage.has_unassigned_slots, SqliteEventLogStorage.index_connection

    def slow_look(self, key):
        free = looked(self, key)
        meet("looked")
        return free

    @contextlib.contextmanager
    def slow_connection(self):
        with connect(self) as conn:
            execute = conn.execute

            def slow_execute(statement, *args, **kwargs):
                if getattr(statement, "is_update", False) and getattr(statement.table, "name", "") == "concurrency_slots":
                    meet("picked")
                return execute(statement, *args, **kwargs)

            conn.execute = slow_execute
            yield conn

    SqliteEventLogStorage.has_unassigned_slots = slow_look
    SqliteEventLogStorage.index_connection = slow_connection
    """
) + MOVER.replace("flag.write_text(context.run_id)", "flag.write_text(f'{time.time()} ')").replace(
    "time.sleep(hold)", "time.sleep(hold)\n        flag.write_text(flag.read_text() + str(time.time()))"
)


def test_two_moves_claiming_the_slot_at_the_same_instant_on_sqlite_hold_it_one_after_the_other(home, tmp_path):
    """Dagster's SQLite claim is check-then-write: without the claim lock both moves were handed the slot."""
    sync = tmp_path / "sync"
    sync.mkdir()
    with dg.DagsterInstance.from_config(home) as instance:  # created first: two processes creating it race too
        instance.event_log_storage.get_concurrency_info(ALIAS_POOL)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_RACER, home, str(sync / me), "120", "2"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in ("a", "b")
    ]
    assert [outcome(racer) for racer in racers] == ["moved", "moved"]
    (a_in, a_out), (b_in, b_out) = (map(float, (sync / me).read_text().split()) for me in ("a", "b"))
    assert a_out <= b_in or b_out <= a_in, ((a_in, a_out), (b_in, b_out))  # never both at once


def test_a_move_behind_a_process_stopped_inside_the_claim_lock_gives_up_naming_the_lock(home):
    """A process stopped (SIGSTOP, Ctrl-Z) while it claimed keeps the claim's file lock: the next move waited
    for ever, logging nothing. Here this test's process holds the lock, as the stopped one would."""
    from filelock import FileLock

    with dg.DagsterInstance.from_config(home) as instance:
        instance.event_log_storage.get_concurrency_info(ALIAS_POOL)
    lock = Path(home) / f"{ALIAS_POOL}.claim.lock"
    with FileLock(lock):
        mover = start_mover(home, Path(home) / "moved", wait=3, hold=0)
        said = outcome(mover, timeout=120)
    assert said.startswith(f"failed: gave up after 3 s waiting for the {ALIAS_POOL} pool's slot")
    assert f"held by no run: the claim lock {lock} is taken by a process stopped while it claimed" in said
    assert outcome(start_mover(home, Path(home) / "moved", wait=60, hold=0)) == "moved"  # the lock freed: it goes


@pytest.mark.parametrize("job", ["retrain", "train_model"])
def test_a_training_run_whose_process_died_is_retried_and_a_failed_step_is_not(tmp_path: Path, job: str):
    """The daemon's run retries (the project's dagster.yaml) relaunch a training run that fail_dead_runs
    failed because its process was killed, so a registration killed mid-way finishes by itself; a
    training run that failed in a step (a blocked gate, a training error) is not run again."""
    from dagster._core.storage.tags import RUN_FAILURE_REASON_TAG
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

    from orchestration.definitions import defs

    definition = defs.resolve_job_def(job)
    with dg.DagsterInstance.from_config(str(write_dagster_home(tmp_path / "home"))) as instance:
        killed, blocked = (instance.create_run_for_job(definition, tags=dict(definition.tags)) for _ in range(2))
        instance.report_run_failed(killed, f"Run {killed.run_id} marked failed: its process (pid 1) no longer exists")
        instance.add_run_tags(blocked.run_id, {RUN_FAILURE_REASON_TAG: "STEP_FAILURE"})
        instance.report_run_failed(instance.get_run_by_id(blocked.run_id), "Steps failed: ['candidate_model']")
        assert should_retry(instance.get_run_by_id(killed.run_id), instance)
        assert not should_retry(instance.get_run_by_id(blocked.run_id), instance)


@pytest.mark.parametrize("config", ["orchestration/dagster.yaml", "team/dagster.yaml"])
def test_a_run_dequeued_while_the_code_server_restarts_waits_for_it_rather_than_failing(
    tmp_path: Path, config: str, monkeypatch
):
    """A code server killed (or restarting) makes the daemon's launches fail with "Could not reach user
    code server" until it is back; a backfill's run failed so is never retried (its backfill is already
    complete). The queue holds such runs and tries again, long enough for the daemon to restart it."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / config).read_text())
    for name in ("KEEL_PG_USER", "KEEL_PG_PASSWORD", "KEEL_PG_HOST", "KEEL_PG_PORT", "KEEL_DAGSTER_DB"):
        monkeypatch.setenv(name, "x")
    from dagster._core.instance.config import dagster_instance_config

    settings, _ = dagster_instance_config(str(home))
    queue = settings.get("run_coordinator", {}).get("config", {})
    assert queue.get("max_user_code_failure_retries", 0) * queue.get("user_code_failure_retry_delay", 60) >= 60
