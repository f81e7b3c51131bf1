"""The approve and rollback jobs: the champion alias moved by a person, from the UI or the CLI.

  dagster job execute -m orchestration.definitions -j approve  -c approve.yaml
  dagster job execute -m orchestration.definitions -j rollback -c rollback.yaml

Each move is compare-and-set in the registry and is recorded twice: as an MLflow registered-model
tag and as a materialization of `registered_model` in Dagster, with when, what, from, to, why and
who (as far as Dagster knows: see launched_by). The target must download, verify and load first.
Both ops share the alias pool with registration, so one Dagster deployment moves one alias at a time.
"""

import dagster as dg
from pydantic import Field

from assets.registered_model import alias_move_metadata, launched_by, load_predictor, registered_model
from resources.registry import (
    ALIAS_POOL,
    CHALLENGER,
    CHAMPION,
    AliasConflict,
    ModelRegistry,
    RegistryUnavailable,
    UnusableVersion,
)

# A promotion takes seconds; run monitoring fails a run stuck longer, which frees the alias pool.
PROMOTION_TAGS = {"dagster/max_runtime": "900"}


class ApproveConfig(dg.Config):
    reason: str = Field(description="Why this version should serve; recorded with the alias move.")
    version: int | None = Field(default=None, description="Version to promote; the current challenger by default.")


class RollbackConfig(dg.Config):
    reason: str = Field(description="Why the champion is rolled back; recorded with the alias move.")


def _record(context: dg.OpExecutionContext, registry: ModelRegistry, name: str, move) -> None:
    context.log_event(
        dg.AssetMaterialization(
            asset_key=registered_model.key,
            description=f"{move.alias}: v{move.from_version} -> v{move.to_version} ({move.kind})",
            metadata={
                "model": name,
                "version": move.to_version,
                "champion_version": registry.champion() or 0,
                **alias_move_metadata(move),
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
            actor=launched_by(context, kind),
            dagster_run_id=context.run_id,
            kind=kind,
            load=load_predictor,
        )
    except (AliasConflict, UnusableVersion, RegistryUnavailable, TimeoutError) as error:
        raise dg.Failure(description=f"{name}: champion not moved: {error}") from None


@dg.op(description="Move `champion` to the challenger (or a given version), compare-and-set.", pool=ALIAS_POOL)
def approve_challenger(context: dg.OpExecutionContext, config: ApproveConfig, registry: ModelRegistry) -> None:
    name = registry.model_name
    version = config.version or registry.alias_version(name, CHALLENGER)
    if version is None:
        raise dg.Failure(description=f"{name} has no challenger to approve; pass `version` to promote a given one")
    move = _move(context, registry, name, version, registry.alias_version(name, CHAMPION), config.reason, "approve")
    if registry.alias_version(name, CHALLENGER) == version:
        registry.delete_alias(name, CHALLENGER)
    _record(context, registry, name, move)
    context.log.info(f"{name}: champion v{move.from_version} -> v{move.to_version}")


@dg.op(description="Move `champion` back to the version it replaced, compare-and-set.", pool=ALIAS_POOL)
def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig, registry: ModelRegistry) -> None:
    name = registry.model_name
    current, target = registry.alias_version(name, CHAMPION), registry.rollback_target(name, CHAMPION)
    if target is None:
        raise dg.Failure(description=f"{name}: champion v{current} has no earlier champion to roll back to")
    move = _move(context, registry, name, target, current, config.reason, "rollback")
    _record(context, registry, name, move)
    context.log.info(f"{name}: champion rolled back v{move.from_version} -> v{move.to_version}")


@dg.job(
    description="Promote the challenger (or `version`) to champion. Run config: reason (required), version.",
    tags=PROMOTION_TAGS,
)
def approve():
    approve_challenger()


@dg.job(description="Move champion back to the previous champion. Run config: reason (required).", tags=PROMOTION_TAGS)
def rollback():
    rollback_champion()
