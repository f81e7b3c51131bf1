"""The rollout jobs: start a canary (or shadow) of a registered version, and conclude it.

  make canary VERSION=3                     (the start_canary job, mode canary, serving.rollout.canary_percent)
  dagster job execute -m orchestration.definitions -j start_canary -c start.yaml
  dagster job execute -m orchestration.definitions -j conclude_rollout -c conclude.yaml

start_canary moves the `challenger` alias to the version (it must download, verify and load),
applies the split to the deployment's endpoint and writes rollout.json. conclude_rollout is what the
sensor canary_bake launches on its decision (or a person, to end a rollout by hand): `promote` moves
`champion` to the challenger through the promotion path (orchestration/promotion.py: compare-and-set,
the version loads first) and serves it alone; `rollback` removes the `challenger` alias with the reason
recorded in the alias history, and serves the champion alone. Each step materializes `deployment`.
"""

import json
from typing import Literal

import dagster as dg
from pydantic import Field

from assets.batch_predictions import published_model
from assets.cards import refresh_card
from assets.deployment import deployment_event
from assets.registered_model import decided_by, load_predictor, registered_model
from ml.artifact import ArtifactIntegrityError
from ml.io import exists
from ml.models import ModelError
from ml.predictor import Predictor
from orchestration.promotion import PROMOTION_TAGS, _after_move, _move, _record
from resources.alias_slot import alias_slot
from resources.params import ParamsResource
from resources.registry import (
    ALIAS_POOL,
    CHALLENGER,
    CHAMPION,
    MANIFEST_TAG,
    AliasConflict,
    AliasMoveRefused,
    ModelRegistry,
    RegistryUnavailable,
    UnusableVersion,
)
from resources.storage import ArtifactStore
from serving.cloud import Endpoint, ServedModel
from serving.models import warm_up
from serving.state import RolloutState, read_state, state_uri, write_state


class StartCanaryConfig(dg.Config):
    reason: str = Field(description="Why this version is tried; recorded with the alias move and in rollout.json.")
    version: int | None = Field(default=None, description="The version to try; the current challenger by default.")
    mode: Literal["canary", "shadow"] = Field(
        default="canary", description="canary: it answers `percent` of requests; shadow: it scores all, answers none."
    )
    percent: float | None = Field(
        default=None, gt=0, le=100, description="A canary's share of requests; default serving.rollout.canary_percent."
    )


class ConcludeConfig(dg.Config):
    outcome: Literal["promote", "rollback"] = Field(description="promote the challenger, or roll it back.")
    version: int = Field(description="The challenger the decision is about; nothing happens to any other.")
    reason: str = Field(description="Why; recorded in the alias history, rollout.json and `deployment`.")
    since: str | None = Field(default=None, description="The rollout's start the decision judged (the sensor sets it).")
    decision: str = Field(default="{}", description="The bake's figures as JSON (serving/bake.py Decision.to_dict).")


def served(storage: ArtifactStore, registry: ModelRegistry, version: int) -> ServedModel:
    sha = registry.version_info(registry.model_name, version)["tags"][MANIFEST_TAG]
    return ServedModel(version, sha, published_model(storage, registry, version), storage.root)


def verify_served_copy(storage: ArtifactStore, registry: ModelRegistry, version: int, compiled: bool) -> None:
    """Load the version from its published copy as the endpoint will (verified, compiled, one row scored):
    a canary of a copy the endpoint cannot load would serve none of its share."""
    model = served(storage, registry, version)
    with storage.local_copy(model.model_uri) as local:
        warm_up(Predictor.load(local, model.manifest_sha256, compiled=compiled))


def _apply(endpoint: Endpoint, state: RolloutState, storage, registry, champion: int, challenger: int | None) -> dict:
    return endpoint.apply(
        state,
        served(storage, registry, champion),
        served(storage, registry, challenger) if challenger is not None and state.mode != "off" else None,
    )


@dg.op(description="Make `challenger` the version and start its canary or shadow.", tags={"keel/pool": ALIAS_POOL})
def start_rollout(
    context: dg.OpExecutionContext,
    config: StartCanaryConfig,
    params: ParamsResource,
    storage: ArtifactStore,
    registry: ModelRegistry,
    endpoint: Endpoint,
) -> None:
    with alias_slot(context):  # one alias move at a time; a dead holder does not block it
        _start_rollout(context, config, params, storage, registry, endpoint)


def _start_rollout(
    context: dg.OpExecutionContext,
    config: StartCanaryConfig,
    params: ParamsResource,
    storage: ArtifactStore,
    registry: ModelRegistry,
    endpoint: Endpoint,
) -> None:
    name, settings = registry.model_name, params.load().serving.rollout
    champion = registry.champion()
    if champion is None:
        raise dg.Failure(description=f"{name} has no champion to compare a canary with: run train_model first")
    challenger = registry.alias_version(name, CHALLENGER)
    version = config.version or challenger
    if version is None:
        raise dg.Failure(description=f"{name} has no challenger: pass `version` (make canary VERSION=n)")
    if version == champion:
        raise dg.Failure(description=f"{name} v{version} is the champion already; a canary needs another version")
    current = read_state(storage.root)
    if current.mode != "off":
        raise dg.Failure(
            description=f"a {current.mode} of v{current.challenger_version} is under way since "
            f"{current.since.isoformat()}; wait for its bake, or end it with conclude_rollout (outcome rollback)"
        )
    actor = decided_by(context, registry, "start_canary")
    move = None  # the challenger alias's move, undone when a later step fails
    try:
        # The copy the endpoint will load (re-published when it does not verify), loaded as the server loads it.
        verify_served_copy(storage, registry, version, params.load().scoring.compiled)
        served(storage, registry, champion)  # the champion's copy too, before anything moves
        if challenger != version:
            move = registry.move_alias(
                name, CHALLENGER, version, challenger, config.reason, actor, context.run_id, "promote", load_predictor
            )
            _record(context, registry, storage, name, move)
        else:
            registry.verify_version(name, version, load_predictor)
        percent = (config.percent or settings.canary_percent) if config.mode == "canary" else 0.0
        state = RolloutState(
            mode=config.mode, challenger_version=version, canary_percent=percent, reason=config.reason, decided_by=actor
        )
        applied = _apply(endpoint, state, storage, registry, champion, version)  # the endpoint first: no state it lacks
        write_state(storage.root, state)
    except (
        AliasConflict,
        AliasMoveRefused,
        UnusableVersion,
        RegistryUnavailable,
        TimeoutError,
        ValueError,
        ArtifactIntegrityError,
        ModelError,
        OSError,
    ) as error:
        undone = _undo_start(registry, name, move, f"start_canary failed: {error}"[:500], actor, context.run_id)
        raise dg.Failure(description=f"{name}: no canary of v{version}: {error}{undone}") from None
    context.log_event(deployment_event(state, champion, **applied))
    context.log.info(f"{name}: {config.mode} of v{version} against champion v{champion} ({percent:g} %)")


def _undo_start(registry: ModelRegistry, name: str, move, reason: str, actor: str, run_id: str) -> str:
    """Put the challenger alias back where a failed start_canary found it; what was done, for its message."""
    if move is None:
        return ""
    try:
        if move.from_version is None:
            registry.retire_alias(name, CHALLENGER, move.to_version, reason, actor, run_id)
        else:
            registry.move_alias(name, CHALLENGER, move.from_version, move.to_version, reason, actor, run_id, "rollback")
    except Exception as problem:
        return f" (and the challenger alias stays on v{move.to_version}: putting it back failed: {problem})"
    return f" (the challenger alias was put back to {'no version' if move.from_version is None else f'v{move.from_version}'})"


def _retire(
    context, registry: ModelRegistry, storage: ArtifactStore, name: str, version: int, reason: str, actor: str
) -> None:
    """Remove `challenger` from the version with the reason in the alias history (when it still holds it);
    the version's model card is written again, so its alias history shows the rollback."""
    if registry.alias_version(name, CHALLENGER) != version:
        context.log.info(f"{name}: challenger no longer v{version}; the alias history is left as it is")
        return
    move = registry.retire_alias(name, CHALLENGER, version, reason, actor, context.run_id, kind="rollback")
    refreshed = refresh_card(registry, storage, name, version)
    context.log_event(
        dg.AssetMaterialization(
            asset_key=registered_model.key,
            description=f"challenger: v{version} rolled back",
            metadata={
                "model": name,
                "version": version,
                "champion_version": registry.champion() or 0,
                "alias_move": dg.MetadataValue.json(move.to_dict()),
                "alias": CHALLENGER,
                "moved_from": f"v{version}",
                "moved_to": "none",
                "reason": reason,
                **({"model_card_url": dg.MetadataValue.url(refreshed["url"])} if refreshed else {}),
            },
        )
    )


@dg.op(
    description="Promote or roll back the challenger the bake judged, and serve the champion alone.",
    tags={"keel/pool": ALIAS_POOL},
)
def conclude(
    context: dg.OpExecutionContext,
    config: ConcludeConfig,
    storage: ArtifactStore,
    registry: ModelRegistry,
    endpoint: Endpoint,
) -> None:
    with alias_slot(context):
        _conclude(context, config, storage, registry, endpoint)


def _conclude(
    context: dg.OpExecutionContext,
    config: ConcludeConfig,
    storage: ArtifactStore,
    registry: ModelRegistry,
    endpoint: Endpoint,
) -> None:
    name, version = registry.model_name, config.version
    state = read_state(storage.root)
    decision = json.loads(config.decision) or None
    actor = decided_by(context, registry, "conclude_rollout")
    ours = state.challenger_version == version and (config.since is None or state.since.isoformat() == config.since)
    if config.outcome == "promote":
        if state.mode == "off" or not ours:
            raise dg.Failure(
                description=f"{name}: v{version} not promoted: the rollout changed since the decision "
                f"(now {state.mode}, challenger v{state.challenger_version}, since {state.since.isoformat()})"
            )
        try:
            move = _move(context, registry, name, version, registry.champion(), config.reason, "promote")
        except dg.Failure as failure:  # a version that no longer loads is never promoted: back to the champion
            _roll_back(
                context, storage, registry, endpoint, state, version, f"promotion refused: {failure.description}"
            )
            raise
        _after_move(context, registry, storage, name, move)  # the challenger alias goes: the champion's history has it
        after = RolloutState(mode="off", reason=f"v{version} promoted: {config.reason}", decided_by=actor)
        applied = _apply(endpoint, after, storage, registry, version, None)
        write_state(storage.root, after)
        context.log_event(deployment_event(after, version, decision, **applied))
        context.log.info(f"{name}: v{version} promoted to champion after its bake")
        return
    _roll_back(context, storage, registry, endpoint, state, version, config.reason, decision)


def _roll_back(context, storage, registry, endpoint, state: RolloutState, version: int, reason: str, decision=None):
    name, actor = registry.model_name, decided_by(context, registry, "conclude_rollout")
    _retire(context, registry, storage, name, version, reason, actor)
    if state.mode != "off" and state.challenger_version != version:
        context.log.info(f"{name}: a newer rollout (v{state.challenger_version}) serves; rollout.json left as it is")
        return
    champion = registry.alias_version(name, CHAMPION)
    if state.mode == "off":  # the sensor already wrote `off` on a breach, and the server follows it: its words stay
        after = state
    elif champion == version:  # the rollout is over, but nothing was rolled back: the file must not say it was
        ended = f"ended: v{version} became the champion by another move, so it was not rolled back ({reason})"
        after = RolloutState(mode="off", reason=ended, decided_by=actor)
    else:
        after = RolloutState(mode="off", reason=f"rolled back: {reason}", decided_by=actor)
    applied = _apply(endpoint, after, storage, registry, champion, None) if champion is not None else {}
    if after is not state or not exists(state_uri(storage.root)):  # a deleted file is written again
        write_state(storage.root, after)
    if champion == version:  # made champion by another path (approve): its rollout is over, nothing rolled back
        context.log_event(deployment_event(after, champion, decision, ended_version=version, **applied))
        if context.run.tags.get("keel/rollout_outcome") == "ended":  # the sensor closing a rollout that ended so
            context.log.info(f"{name}: the rollout of v{version} ended: {reason}")
            return
        history = registry.alias_history(name, CHAMPION)
        by = f" ({history[-1].kind} by {history[-1].actor} at {history[-1].when})" if history else ""
        # A failure, so the run alerts: the version judged for rollback serves every request now.
        raise dg.Failure(
            description=f"{name}: v{version}, judged for rollback ({reason}), became the champion by another move"
            f"{by}: nothing was rolled back and it serves every request; run `rollback` if the judgement stands"
        )
    context.log_event(deployment_event(after, champion, decision, rolled_back_version=version, **applied))
    context.log.warning(f"{name}: v{version} rolled back: {reason}")


@dg.job(
    description="Try a registered version on live traffic: a canary (a share of the requests) or a shadow. "
    "Run config: reason (required), version (default: the challenger), mode, percent.",
    tags=PROMOTION_TAGS,
)
def start_canary():
    start_rollout()


@dg.job(
    description="End a rollout: promote the challenger to champion, or roll it back; the sensor canary_bake "
    "launches it on its decision. Run config: outcome, version, reason.",
    tags=PROMOTION_TAGS,
)
def conclude_rollout():
    conclude()


ROLLOUT_JOBS = [start_canary, conclude_rollout]
