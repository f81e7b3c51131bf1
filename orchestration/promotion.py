"""The approve and rollback jobs: the champion alias moved by a person, from the UI or the CLI.

  dagster job execute -m orchestration.definitions -j approve  -c approve.yaml
  dagster job execute -m orchestration.definitions -j rollback -c rollback.yaml

Each move is compare-and-set in the registry and is recorded twice: as an MLflow registered-model
tag and as a materialization of `registered_model` in Dagster, with when, what, from, to, why and
who (as far as Dagster knows: see launched_by; on an MLflow server with authentication, the MLflow
user whose credentials the process holds, and in the team profile only a person's own: see decided_by). The target must download, verify and load first.
Both ops take the alias pool's slot as registration does (resources/alias_slot.py), so one Dagster
deployment moves one alias at a time; a run that died holding the slot does not block them.
An approve of a version rolled back after the approve was requested is refused (it was just judged bad).
A rollback onto the version under canary or shadow is refused (the bake would judge it against itself):
end the rollout first. A rollback is also refused when the champion moved after the rollback was requested
(its run's first event): undoing that later move would bring back the version its requester meant to remove.

`approve` first sets the challenger's model card beside the champion's (a Markdown table in its log
and in the recorded materialization), so the person approving has the facts in front of them; every
move writes both versions' cards again, so their alias history is the registry's.
"""

import datetime as dt

import dagster as dg
from pydantic import Field

from assets.cards import refresh_card
from assets.registered_model import alias_move_metadata, decided_by, load_predictor, registered_model
from ml.model_card import side_by_side
from resources.alias_slot import alias_slot
from resources.model_cards import read_card
from resources.registry import (
    ALIAS_POOL,
    CHALLENGER,
    CHAMPION,
    AliasConflict,
    AliasMoveRefused,
    ModelRegistry,
    RegistryUnavailable,
    UnusableVersion,
)
from resources.storage import ArtifactStore
from serving.state import read_state

# A promotion takes seconds; run monitoring fails a run stuck longer, which frees the alias slot.
PROMOTION_TAGS = {"dagster/max_runtime": "900"}


class ApproveConfig(dg.Config):
    reason: str = Field(description="Why this version should serve; recorded with the alias move.")
    version: int | None = Field(default=None, description="Version to promote; the current challenger by default.")


class RollbackConfig(dg.Config):
    reason: str = Field(description="Why the champion is rolled back; recorded with the alias move.")


def _record(
    context: dg.OpExecutionContext,
    registry: ModelRegistry,
    storage: ArtifactStore,
    name: str,
    move,
    extra: dict | None = None,
) -> None:
    cards = {}
    for version in (move.from_version, move.to_version):  # both cards' alias history follows the move
        refreshed = refresh_card(registry, storage, name, version)
        if refreshed and version == move.to_version:
            cards["model_card_url"] = dg.MetadataValue.url(refreshed["url"])
    context.log_event(
        dg.AssetMaterialization(
            asset_key=registered_model.key,
            description=f"{move.alias}: v{move.from_version} -> v{move.to_version} ({move.kind})",
            metadata={
                "model": name,
                "version": move.to_version,
                "champion_version": registry.champion() or 0,
                **alias_move_metadata(move),
                **cards,
                **(extra or {}),
            },
        )
    )


def _move(context, registry: ModelRegistry, name: str, to_version: int, expected: int | None, reason: str, kind: str):
    try:
        return registry.move_alias(
            name,
            CHAMPION,
            to_version,
            expected_from=expected,
            reason=reason,
            actor=decided_by(context, registry, kind),
            dagster_run_id=context.run_id,
            kind=kind,
            load=load_predictor,
        )
    except (AliasConflict, AliasMoveRefused, UnusableVersion, RegistryUnavailable, TimeoutError) as error:
        raise dg.Failure(description=f"{name}: champion not moved: {error}") from None


def _after_move(context, registry: ModelRegistry, storage: ArtifactStore, name: str, move, extra=None) -> None:
    """Record a move that happened (the challenger alias off the new champion, the cards, the materialization):
    when that fails, the failure says the alias moved, so nobody takes the run for a move that did not happen."""
    try:
        if move.alias == CHAMPION and registry.alias_version(name, CHALLENGER) == move.to_version:
            registry.delete_alias(name, CHALLENGER)
        _record(context, registry, storage, name, move, extra)
    except Exception as error:
        raise dg.Failure(
            description=f"{name}: {move.alias} moved v{move.from_version} -> v{move.to_version} ({move.kind}, in the "
            f"registry's alias history), but recording it afterwards failed ({type(error).__name__}: "
            f"{str(error)[:400]}): the move stands; do not run it again"
        ) from None


def compare_cards(registry: ModelRegistry, name: str, version: int, champion: int | None) -> str:
    """The challenger's card beside the champion's, as a Markdown table; says so when a card is missing."""
    challenger_card = read_card(registry, name, version)
    if challenger_card is None:
        return f"v{version} has no model card (registered before cards existed, or its registration was stopped before it wrote one)\n"
    champion_card = read_card(registry, name, champion) if champion is not None else None
    return side_by_side(challenger_card, champion_card)


@dg.op(
    description="Show the challenger's model card beside the champion's, then move `champion` to the challenger "
    "(or a given version), compare-and-set.",
    tags={"keel/pool": ALIAS_POOL},
)
def approve_challenger(
    context: dg.OpExecutionContext, config: ApproveConfig, registry: ModelRegistry, storage: ArtifactStore
) -> None:
    with alias_slot(context):
        _approve(context, config, registry, storage)


def _approve(
    context: dg.OpExecutionContext, config: ApproveConfig, registry: ModelRegistry, storage: ArtifactStore
) -> None:
    name = registry.model_name
    version = config.version or registry.alias_version(name, CHALLENGER)
    if version is None:
        raise dg.Failure(description=f"{name} has no challenger to approve; pass `version` to promote a given one")
    _refuse_if_rolled_back_since_requested(context, registry, name, version)
    champion = registry.alias_version(name, CHAMPION)
    comparison = compare_cards(registry, name, version, champion)
    context.log.info(f"{name}: v{version} (challenger) beside v{champion} (champion):\n{comparison}")
    move = _move(context, registry, name, version, champion, config.reason, "approve")
    _after_move(context, registry, storage, name, move, {"cards_side_by_side": dg.MetadataValue.md(comparison)})
    context.log.info(f"{name}: champion v{move.from_version} -> v{move.to_version}")


def rollout_of(storage: ArtifactStore, registry: ModelRegistry) -> tuple[int, str] | None:
    """The version under canary or shadow and how, by rollout.json; by the `challenger` alias when the file
    cannot be read (it may name a rollout then)."""
    try:
        state = read_state(storage.root)
    except Exception as error:  # noqa: BLE001 - the registry's alias is what is left to go by
        challenger = registry.alias_version(registry.model_name, CHALLENGER)
        return None if challenger is None else (challenger, f"a rollout as far as is known ({error})")
    if state.mode == "off":
        return None
    return state.challenger_version, f"{state.mode} since {state.since.isoformat()} (rollout.json)"


@dg.op(description="Move `champion` back to the version it replaced, compare-and-set.", tags={"keel/pool": ALIAS_POOL})
def rollback_champion(
    context: dg.OpExecutionContext, config: RollbackConfig, registry: ModelRegistry, storage: ArtifactStore
) -> None:
    with alias_slot(context):
        _rollback(context, config, registry, storage)


def _rollback(
    context: dg.OpExecutionContext, config: RollbackConfig, registry: ModelRegistry, storage: ArtifactStore
) -> None:
    name = registry.model_name
    current, target = registry.alias_version(name, CHAMPION), registry.rollback_target(name, CHAMPION)
    _refuse_if_moved_since_requested(context, registry, name)
    if target is None:
        raise dg.Failure(description=f"{name}: champion v{current} has no earlier champion to roll back to")
    under = rollout_of(storage, registry)
    if under is not None and under[0] == target:
        raise dg.Failure(
            description=f"{name}: champion not rolled back to v{target}: v{target} is under {under[1]}; the bake would "
            f"judge it against itself. End the rollout first (conclude_rollout, outcome rollback, version {target}), "
            "then roll back"
        )
    move = _move(context, registry, name, target, current, config.reason, "rollback")
    _after_move(context, registry, storage, name, move)
    context.log.info(f"{name}: champion rolled back v{move.from_version} -> v{move.to_version}")


def _requested_at(context: dg.OpExecutionContext) -> dt.datetime | None:
    """When the run was asked for: its first event (queued, starting or started), stamped by the process that
    wrote it (the run's creation time in the run storage has only whole seconds on SQLite and the database's
    own clock)."""
    first = context.instance.get_records_for_run(context.run_id, limit=1).records
    return dt.datetime.fromtimestamp(first[0].event_log_entry.timestamp, dt.UTC) if first else None


def _moved_at(move) -> dt.datetime:
    return dt.datetime.strptime(move.when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _refuse_if_rolled_back_since_requested(
    context: dg.OpExecutionContext, registry: ModelRegistry, name: str, version: int
) -> None:
    """An approve promotes the version its requester saw: when that version was rolled back (the bake's
    breach, a person's rollback) between the request and this step, promoting it would bring back a version
    just judged bad."""
    requested = _requested_at(context)
    if requested is None:
        return
    for move in reversed(registry.alias_history(name)):
        if _moved_at(move) <= requested:
            break
        if move.kind == "rollback" and move.from_version == version:
            raise dg.Failure(
                description=f"{name}: v{version} not approved: it was rolled back since this approve was requested "
                f"({requested.isoformat(timespec='seconds')}): {move.alias} v{version} removed at {move.when} by "
                f"{move.actor} ({move.reason}). Nothing moved; if v{version} should be champion all the same, run "
                "approve again"
            )


def _refuse_if_moved_since_requested(context: dg.OpExecutionContext, registry: ModelRegistry, name: str) -> None:
    """A rollback undoes the champion its requester saw: when another move (an approve, a rollback, a promotion)
    came between the request and this step, undoing the latest move would bring back the version the
    requester meant to remove."""
    requested = _requested_at(context)
    history = registry.alias_history(name, CHAMPION)
    if requested is None or not history:
        return
    last = history[-1]
    moved = _moved_at(last)
    if moved > requested:
        raise dg.Failure(
            description=f"{name}: champion not rolled back: it moved since this rollback was requested "
            f"({requested.isoformat(timespec='seconds')}): {last.kind} v{last.from_version} -> v{last.to_version} "
            f"at {last.when} by {last.actor} ({last.reason}). Nothing moved; if v{last.to_version} should be rolled "
            "back, run rollback again"
        )


@dg.job(
    description="Promote the challenger (or `version`) to champion. Run config: reason (required), version.",
    tags=PROMOTION_TAGS,
)
def approve():
    approve_challenger()


@dg.job(description="Move champion back to the previous champion. Run config: reason (required).", tags=PROMOTION_TAGS)
def rollback():
    rollback_champion()
