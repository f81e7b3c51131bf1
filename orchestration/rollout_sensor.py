"""The sensor canary_bake: judges a running canary (or shadow) each tick, and ends it on a decision.

A breach sends every request back to the champion in the same tick (rollout.json `off`, which the
server reads within serving.poll_seconds) and launches conclude_rollout to record the rollback in the
alias history and on `deployment`; a clean bake launches conclude_rollout to promote the challenger.
Run keys name the rollout (version and start) and the outcome, so a decision is acted on once.
"""

import datetime as dt
import json
import re

import dagster as dg
import fsspec
import pandas as pd

import ml.io
from assets.labels import label_values_problem
from ml.ids import ids_as_text
from ml.params import Params
from orchestration.arrivals import DATE
from orchestration.rollout import conclude_rollout
from orchestration.rollout_reconcile import Ended, alias_move_running, check, cursor_for, end_request
from orchestration.sensor_guard import alerting
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore
from serving.bake import LABEL, Decision, decide
from serving.request_log import logged_days, read_day
from serving.state import RolloutState, write_state

SENSOR = "canary_bake"


def _days(found: list[str], since: dt.datetime, now: dt.datetime) -> list[str]:
    """The days of `found` the bake spans. Taken from a listing, not counted from `since`: a `since` from a
    clock reset to 1970 or year 1 would otherwise mean a look-up for each of up to 740,000 days."""
    first, last = since.date().isoformat(), now.date().isoformat()
    return sorted(day for day in set(found) if first <= day <= last)


def bake_requests(
    store_root: str, since: dt.datetime, now: dt.datetime, ignored: list[str] | None = None
) -> pd.DataFrame:
    """Every logged request row of the days the bake spans (decide keeps those from `since`); a file
    that is not the log's is left out and named in `ignored`."""
    days = _days(logged_days(store_root, ignored), since, now)
    frames = [frame for day in days if not (frame := read_day(store_root, day, ignored)).empty]
    return pd.concat(frames, ignore_index=True) if frames else read_day(store_root, since.date())


def _labels_file(uri: str, spec) -> pd.DataFrame:
    """A labels file's id + target, or ValueError saying what is wrong with it."""
    try:
        frame = ml.io.read_parquet(uri)
    except Exception as error:
        raise ValueError(f"not a readable Parquet file ({type(error).__name__})") from error
    missing = [c for c in (spec.id.column, spec.target.column) if c not in frame.columns]
    if missing:
        raise ValueError(f"it has no column {missing[0]!r}")
    # As the labels job checks them: a label other than the spec's two, or an id given twice, would be
    # read as a wrong truth (a blank or 'Yes ' as a negative), so the file is not used.
    problem = label_values_problem(frame[spec.target.column], spec)
    if problem:
        raise ValueError(problem)
    # Ids join the request log's as text (ml/ids.py); a float or date id raises IdTypeError, a ValueError.
    frame = ids_as_text(frame[[spec.id.column, spec.target.column]], spec.id.column, uri)
    repeated = frame[spec.id.column][frame[spec.id.column].duplicated()]
    if not repeated.empty:
        raise ValueError(f"column {spec.id.column!r} has {len(repeated)} repeated id(s), e.g. {repeated.iloc[0]!r}")
    return frame


def arrived_labels(settings: Params, days: list[str], ignored: list[str] | None = None) -> pd.DataFrame | None:
    """The labels that have arrived for the bake's days (params.yaml daily.labels), id + 0/1 `label`;
    a file that cannot be used is left out and named in `ignored`."""
    spec, frames = settings.dataset, []
    for day in days:
        uri = settings.labels_uri(day)
        if not ml.io.exists(uri):
            continue
        try:
            frame = _labels_file(uri, spec)
        except ValueError as error:
            if ignored is not None:
                ignored.append(f"{uri}: {error}")
            continue
        frames.append(frame.assign(**{LABEL: (frame[spec.target.column].astype(str) == spec.target.positive)}))
    if not frames:
        return None
    labels = pd.concat(frames, ignore_index=True).drop_duplicates(spec.id.column, keep="last")
    return labels.assign(**{LABEL: labels[LABEL].astype("int64")})


def labelled_days(settings: Params) -> list[str]:
    """The days something has arrived under a labels file's name for, from one listing."""
    fs, pattern = fsspec.core.url_to_fs(settings.labels_uri("*"))
    name = re.escape(settings.labels_uri("{date}").rsplit("/", 1)[-1]).replace(re.escape("{date}"), DATE)
    return [m.group(1) for path in fs.glob(pattern) if (m := re.fullmatch(name, path.rsplit("/", 1)[-1]))]


def judge(
    state: RolloutState,
    settings: Params,
    store_root: str,
    champion: int | None,
    now: dt.datetime,
    ignored: list[str] | None = None,
) -> Decision:
    """The bake's decision; files it could not use are named in `ignored` (and left out)."""
    return decide(
        bake_requests(store_root, state.since, now, ignored),
        canary_arm="shadow" if state.mode == "shadow" else "canary",
        challenger_version=state.challenger_version,
        since=state.since,
        now=now,
        settings=settings.serving.rollout,
        champion_version=champion,
        labels=arrived_labels(settings, _days(labelled_days(settings), state.since, now), ignored),
        id_column=settings.dataset.id.column,
        seed=settings.drift.seed,
        canary_percent=state.canary_percent,
    )


@dg.sensor(
    job=conclude_rollout,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every 30 s while a canary or shadow runs (rollout.json): compares its arm of the request log with "
        "the champion's over the bake (p99 latency, 5xx rate, score drift, AUC on labelled requests; "
        "serving.rollout thresholds). A breach returns all traffic to the champion at once and launches the "
        "conclude_rollout job to record the rollback with its reason; a clean bake launches it to promote."
    ),
)
@alerting
def canary_bake(
    context: dg.SensorEvaluationContext, params: ParamsResource, storage: ArtifactStore, registry: ModelRegistry
):
    busy = alias_move_running(context.instance)
    if busy:
        return dg.SkipReason(f"{busy}: the rollout is judged after it")
    checked = check(storage, registry, context.cursor, f"sensor {SENSOR}")
    context.update_cursor(cursor_for(checked if isinstance(checked, RolloutState) else None))
    if isinstance(checked, Ended):
        context.log.warning(checked.reason)
        return end_request(checked) if checked.version is not None else dg.SkipReason(checked.reason)
    state = checked
    if state.mode == "off":
        return dg.SkipReason(f"no canary or shadow: rollout.json is off ({state.reason or 'no reason'})")
    settings, now = params.load(), dt.datetime.now(dt.UTC)
    ignored: list[str] = []
    decision = judge(state, settings, storage.root, registry.champion(), now, ignored)
    for problem in ignored:  # a stray or malformed file never stops the bake; it is named
        context.log.warning(f"ignored {problem}")
    note = f" (ignored {len(ignored)} file(s): {'; '.join(ignored)[:600]})" if ignored else ""
    what = f"{state.mode} of v{state.challenger_version} since {state.since.isoformat()}"
    if decision.outcome == "wait":
        return dg.SkipReason(f"{what}: {decision.reason}{note}")
    if decision.outcome == "rollback":
        # Traffic first: the server follows rollout.json within serving.poll_seconds.
        write_state(
            storage.root,
            RolloutState(
                mode="off",
                reason=f"v{state.challenger_version} rolled back: {decision.reason}",
                decided_by=f"sensor {SENSOR}",
            ),
        )
        context.update_cursor("")  # ended here, with its record
        context.log.warning(f"{what}: rolled back: {decision.reason}")
    else:
        context.log.info(f"{what}: promote: {decision.reason}")
    return dg.RunRequest(
        run_key=f"v{state.challenger_version}-{state.since.isoformat()}-{decision.outcome}",
        run_config={
            "ops": {
                "conclude": {
                    "config": {
                        "outcome": decision.outcome,
                        "version": state.challenger_version,
                        "reason": decision.reason,
                        "since": state.since.isoformat(),
                        "decision": json.dumps(decision.to_dict()),
                    }
                }
            }
        },
        tags={"keel/rollout_outcome": decision.outcome, "keel/challenger": str(state.challenger_version)},
    )


ROLLOUT_SENSORS = [canary_bake]
