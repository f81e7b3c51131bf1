"""The rollout state judged with the registry's aliases, at each tick of canary_bake before the bake.

rollout.json says which challenger runs; the registry's aliases say what is true. A rollout is over,
and ends with a record, when

- its challenger became the champion, or no longer holds the `challenger` alias;
- rollout.json cannot be read (the file is set aside beside it, for a look);
- rollout.json was deleted, or set to `off` by hand, while the challenger still holds its alias
  (the sensor's cursor remembers the rollout it last saw under way).

The record: rollout.json `off` with the reason (the server follows within serving.poll_seconds), and
a conclude_rollout run (outcome rollback) that retires a leftover `challenger` alias in the alias
history with the reason and materializes `deployment`. Nothing is judged while a job that moves
an alias runs: it writes rollout.json itself when it is done.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ml import io
from resources.registry import CHALLENGER, ModelRegistry
from resources.storage import ArtifactStore
from serving.state import RolloutState, read_state, reconcile, state_uri, write_state

ALIAS_JOBS = frozenset({"start_canary", "conclude_rollout", "approve", "rollback"})
# A run older than this is not waited for (PROMOTION_TAGS: run monitoring fails it after 900 s).
ALIAS_JOB_HORIZON = dt.timedelta(minutes=15)
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class Ended:
    """The rollout is over: conclude_rollout records it (version None: no rollout was known under way)."""

    version: int | None
    since: str
    reason: str


def alias_move_running(instance: dg.DagsterInstance) -> str | None:
    """The run of a job that moves aliases, when one is under way (recent enough to be alive)."""
    horizon = dt.datetime.now(dt.UTC) - ALIAS_JOB_HORIZON
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=IN_PROGRESS), limit=50):
        run = record.dagster_run
        if run.job_name in ALIAS_JOBS and record.create_timestamp >= horizon:
            return f"{run.job_name} run {run.run_id} is under way"
    return None


def remembered(cursor: str | None) -> dict | None:
    """The rollout the sensor last saw under way: {version, since, mode}, or None."""
    try:
        seen = json.loads(cursor) if cursor else None
    except ValueError:
        return None
    return seen if isinstance(seen, dict) and isinstance(seen.get("version"), int) else None


def cursor_for(state: RolloutState | None) -> str:
    if state is None or state.mode == "off":
        return ""
    return json.dumps({"version": state.challenger_version, "since": state.since.isoformat(), "mode": state.mode})


def _set_aside(uri: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    if io.is_remote(uri):
        return "left in place (object store)"
    aside = Path(uri).with_name(f"{Path(uri).name}.unreadable-{stamp}")
    Path(uri).replace(aside)
    return f"set aside as {aside.name}"


def _end(store_root: str, reason: str, by: str) -> None:
    write_state(store_root, RolloutState(mode="off", reason=reason, decided_by=by))


def check(storage: ArtifactStore, registry: ModelRegistry, cursor: str | None, by: str) -> RolloutState | Ended:
    """The rollout state to judge, or how the rollout ended (rollout.json is `off` with the reason then)."""
    name, seen = registry.model_name, remembered(cursor)
    champion, challenger = registry.champion(), registry.alias_version(name, CHALLENGER)
    uri = state_uri(storage.root)
    try:
        state = read_state(storage.root)
    except Exception as error:  # noqa: BLE001 - unparseable, invalid or unreadable: it cannot be judged
        where = _set_aside(uri)
        reason = f"{uri} cannot be read ({type(error).__name__}: {error}; {where}): the rollout cannot be judged"
        _end(storage.root, reason, by)
        return Ended(seen["version"] if seen else None, seen["since"] if seen else "", reason)
    if state.mode == "off":
        if seen is not None and challenger == seen["version"] and champion != seen["version"]:
            how = (
                "was deleted"
                if not io.exists(uri)
                else f"was set to off by {state.decided_by or 'someone'} ({state.reason or 'no reason'})"
            )
            reason = (
                f"rollout.json {how} while the {seen['mode']} of v{seen['version']} since {seen['since']} ran, "
                "without conclude_rollout: the rollout ended"
            )
            _end(storage.root, reason, by)
            return Ended(seen["version"], seen["since"], reason)
        return state
    _, overruled = reconcile(state, champion, challenger)
    if overruled is None:
        return state
    _end(storage.root, overruled, by)
    return Ended(state.challenger_version, state.since.isoformat(), overruled)


def end_request(ended: Ended) -> dg.RunRequest:
    """conclude_rollout (rollback) for the version: retires its `challenger` alias with the reason and
    materializes `deployment`; once per rollout."""
    return dg.RunRequest(
        run_key=f"v{ended.version}-{ended.since}-ended",
        run_config={
            "ops": {"conclude": {"config": {"outcome": "rollback", "version": ended.version, "reason": ended.reason}}}
        },
        tags={"keel/rollout_outcome": "ended", "keel/challenger": str(ended.version)},
    )
