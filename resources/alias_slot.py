"""The one slot of the Dagster pool ALIAS_POOL, taken by the step that moves an alias, and waited for politely.

Dagster's own wait for a pool slot (an op's `pool=`) polls without sleeping in the in-process
executor and cannot be interrupted: a rollback behind a run that died holding the slot spun at 100 %
CPU, ignored SIGTERM and waited for the run's 6 h `max_runtime`. The steps that move an alias take
the slot here instead, in the same pool of the same instance (the UI's Concurrency page shows it):

- between tries the step sleeps, where Dagster can interrupt it (terminate, SIGTERM, Ctrl-C);
- a holder (or a waiter ahead in the queue) that cannot be using the slot any more is cleared at once: a run that has ended (run
  monitoring frees its slots only a minute later, and not at all without the daemon), or a run
  still STARTED whose process is gone (resources/run_liveness.py), which is marked failed as run
  monitoring would mark it;
- after `wait_seconds` the step fails naming the run that holds the slot, its job, status and step.

On SQLite Dagster's claim is check-then-write with no row lock (`with_for_update` is a no-op there), so two
processes that claim at the same instant can both be handed the one slot; there each claim is made
under a file lock in the instance's folder, which every process of a SQLite instance shares. The lock is
held for the claim's two statements; a process stopped inside them (Ctrl-Z, SIGSTOP, a paused container)
would hold it, so a waiter tries it for POLL_SECONDS at a time and gives up after `wait_seconds` naming it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy.exc
from filelock import FileLock, Timeout

from resources.registry import ALIAS_POOL
from resources.run_liveness import process_gone

WAIT_SECONDS = 600.0  # an alias move takes seconds; run monitoring finds a dead holder within about two minutes
POLL_SECONDS = 1.0


class AliasSlotTimeout(dg.Failure):
    """Another run held the alias slot for longer than the step would wait; the message names it."""


def _clear_dead_holders(instance: dg.DagsterInstance, me: str, log) -> bool:
    """Free the slot of holders that cannot be using it; True when one was freed."""
    freed = False
    info = instance.event_log_storage.get_concurrency_info(ALIAS_POOL)
    # Waiters too: a step killed while it waited stays first in Dagster's queue, and no slot goes past it.
    for run_id in sorted((info.active_run_ids | info.pending_run_ids | info.assigned_run_ids) - {me}):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            gone = process_gone(instance, run_id)
            if gone is None:
                continue
            instance.report_run_failed(run, f"Run {run_id} held the alias slot, but {gone}: marked failed.")
            log.warning(f"run {run_id} held the alias slot, but {gone}: marked it failed")
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        log.info(f"freed the alias slot held or waited for by run {run_id}, which has ended")
        freed = True
    return freed


def _holders(instance: dg.DagsterInstance, me: str) -> str:
    described = []
    info = instance.event_log_storage.get_concurrency_info(ALIAS_POOL)
    for slot in info.claimed_slots:
        if slot.run_id == me:
            continue
        run = instance.get_run_by_id(slot.run_id)
        what = f"{run.job_name}, {run.status.value}" if run is not None else "unknown to this instance"
        described.append(f"run {slot.run_id} ({what}, step {slot.step_key})")
    for step in info.pending_steps:
        if step.run_id != me:
            run = instance.get_run_by_id(step.run_id)
            what = f"{run.job_name}, {run.status.value}" if run is not None else "unknown to this instance"
            described.append(f"run {step.run_id} waiting ahead ({what}, step {step.step_key})")
    return ", ".join(described) or "no run (the pool's limit is 0?)"


def _claim_lock(instance: dg.DagsterInstance) -> Path | None:
    """The file that serialises claims on a SQLite instance; None where the database locks the slot's row."""
    with instance.event_log_storage.index_connection() as conn:
        sqlite = conn.dialect.name == "sqlite"
    return Path(instance.root_directory) / f"{ALIAS_POOL}.claim.lock" if sqlite else None


def _claim(instance: dg.DagsterInstance, run_id: str, step_key: str, lock: Path | None) -> bool | None:
    """Claim the slot for the step: True when claimed, False when it is held, None when the claim lock
    stayed taken for POLL_SECONDS (see the module's text)."""
    storage = instance.event_log_storage
    if lock is None:
        return storage.claim_concurrency_slot(ALIAS_POOL, run_id, step_key).is_claimed
    try:
        with FileLock(lock, timeout=POLL_SECONDS):
            return storage.claim_concurrency_slot(ALIAS_POOL, run_id, step_key).is_claimed
    except Timeout:
        return None


@contextmanager
def alias_slot(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    wait_seconds: float = WAIT_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> Iterator[None]:
    """Hold the alias pool's slot for the block; wait for it as the module says."""
    instance, run_id = context.instance, context.run_id
    storage = instance.event_log_storage
    step_key = context.get_step_execution_context().step.key
    if not storage.supports_global_concurrency_limits:
        yield
        return
    if not storage.get_concurrency_info(ALIAS_POOL).slot_count:
        # Another process may have set the pool up first (on Postgres a unique-key error).
        with contextlib.suppress(sqlalchemy.exc.IntegrityError):
            storage.initialize_concurrency_limit_to_default(ALIAS_POOL)
    if instance.global_op_concurrency_default_limit is None and not storage.get_concurrency_info(ALIAS_POOL).slot_count:
        # An instance without pool limits (no `concurrency.pools.default_limit`, none set for this pool) runs
        # a pool's steps unlimited, as Dagster's own `pool=` does; the project's dagster.yaml sets the limit 1.
        yield
        return
    deadline, announced, lock = time.monotonic() + wait_seconds, False, _claim_lock(instance)
    try:
        while not (claimed := _claim(instance, run_id, step_key, lock)):
            if claimed is False and _clear_dead_holders(instance, run_id, context.log):
                continue
            holder = (
                _holders(instance, run_id)
                if claimed is False
                else f"no run: the claim lock {lock} is taken by a process stopped while it claimed (`fuser {lock}` "
                "names it; resume or kill it)"
            )
            if time.monotonic() > deadline:
                raise AliasSlotTimeout(
                    description=f"gave up after {wait_seconds:.0f} s waiting for the {ALIAS_POOL} pool's slot "
                    f"(alias moves are one at a time), held by {holder}. If that run is stuck, terminate it in "
                    "the UI (or free its slot under Deployment > Concurrency), then run this again."
                )
            if not announced:
                context.log.info(f"waiting for the {ALIAS_POOL} pool's slot, held by {holder}")
                announced = True
            if claimed is False:
                time.sleep(poll_seconds)  # Dagster interrupts a sleeping step (terminate, SIGTERM)
        yield
    finally:
        storage.free_concurrency_slot_for_step(run_id, step_key)
