"""The sensor canary_bake: judges a running canary (or shadow) each tick, and ends it on a decision.

A breach sends every request back to the champion in the same tick (rollout.json `off`, which the
server reads within serving.poll_seconds) and launches conclude_rollout to record the rollback in the
alias history and on `deployment`; a clean bake launches conclude_rollout to promote the challenger.
Run keys name the rollout (version and start) and the outcome, so a decision is acted on once.
"""

import datetime as dt
import json

import dagster as dg
import pandas as pd

import ml.io
from ml.ids import ids_as_text
from ml.params import Params
from orchestration.rollout import conclude_rollout
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore
from serving.bake import LABEL, Decision, decide
from serving.request_log import read_day
from serving.state import RolloutState, read_state, write_state

SENSOR = "canary_bake"


def _days(since: dt.datetime, now: dt.datetime) -> list[str]:
    first, last = since.date(), now.date()
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def bake_requests(store_root: str, since: dt.datetime, now: dt.datetime) -> pd.DataFrame:
    """Every logged request row of the days the bake spans (decide keeps those from `since`)."""
    frames = [frame for day in _days(since, now) if not (frame := read_day(store_root, day)).empty]
    return pd.concat(frames, ignore_index=True) if frames else read_day(store_root, since.date())


def arrived_labels(settings: Params, days: list[str]) -> pd.DataFrame | None:
    """The labels that have arrived for the bake's days (params.yaml daily.labels), id + 0/1 `label`."""
    spec, frames = settings.dataset, []
    for day in days:
        uri = settings.labels_uri(day)
        if ml.io.exists(uri):
            frame = ids_as_text(ml.io.read_parquet(uri)[[spec.id.column, spec.target.column]], spec.id.column, uri)
            frames.append(frame.assign(**{LABEL: (frame[spec.target.column].astype(str) == spec.target.positive)}))
    if not frames:
        return None
    labels = pd.concat(frames, ignore_index=True).drop_duplicates(spec.id.column, keep="last")
    return labels.assign(**{LABEL: labels[LABEL].astype("int64")})


def judge(state: RolloutState, settings: Params, store_root: str, champion: int | None, now: dt.datetime) -> Decision:
    return decide(
        bake_requests(store_root, state.since, now),
        canary_arm="shadow" if state.mode == "shadow" else "canary",
        challenger_version=state.challenger_version,
        since=state.since,
        now=now,
        settings=settings.serving.rollout,
        champion_version=champion,
        labels=arrived_labels(settings, _days(state.since, now)),
        id_column=settings.dataset.id.column,
        seed=settings.drift.seed,
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
def canary_bake(
    context: dg.SensorEvaluationContext, params: ParamsResource, storage: ArtifactStore, registry: ModelRegistry
):
    state = read_state(storage.root)
    if state.mode == "off":
        return dg.SkipReason(f"no canary or shadow: rollout.json is off ({state.reason or 'no reason'})")
    settings, now = params.load(), dt.datetime.now(dt.UTC)
    decision = judge(state, settings, storage.root, registry.champion(), now)
    what = f"{state.mode} of v{state.challenger_version} since {state.since.isoformat()}"
    if decision.outcome == "wait":
        return dg.SkipReason(f"{what}: {decision.reason}")
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
