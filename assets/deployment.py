"""deployment: which version answers which share of the requests, since when and why.

Materialized by every rollout step (start_canary, the bake's promotion or rollback: orchestration/
rollout.py) with the bake's figures, so the asset's history in the UI is the endpoint's history; a
materialization by hand records the state as it is now.
"""

from typing import Any

import dagster as dg

from resources.registry import CHALLENGER, ModelRegistry
from resources.storage import ArtifactStore
from serving.bake import Decision
from serving.cloud import shares
from serving.state import RolloutState, read_state

DEPLOYMENT = dg.AssetKey("deployment")


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def decision_metadata(decision: Decision | dict[str, Any]) -> dict[str, Any]:
    """The bake's figures, per arm, flat (the UI plots each float of an asset's metadata over time)."""
    d = decision.to_dict() if isinstance(decision, Decision) else decision
    champion, canary = d["champion"], d["canary"]
    return {
        "outcome": d["outcome"],
        "decision": d["reason"],
        "requests_champion": int(champion["requests"]),
        "requests_canary": int(canary["requests"]),
        "p99_ms_champion": _number(champion["p99_ms"]),
        "p99_ms_canary": _number(canary["p99_ms"]),
        "error_rate_champion": _number(champion["error_rate"]),
        "error_rate_canary": _number(canary["error_rate"]),
        "score_drift": _number(d["score_drift"]),
        "score_drift_threshold": _number(d["score_drift_threshold"]),
        "labelled_champion": int(champion["labelled"]),
        "labelled_canary": int(canary["labelled"]),
        "roc_auc_champion": _number(champion["roc_auc"]),
        "roc_auc_canary": _number(canary["roc_auc"]),
        "baked_minutes": float(d["baked_minutes"]),
    }


def state_metadata(state: RolloutState, champion: int | None) -> dict[str, Any]:
    split = shares(state, champion, state.challenger_version) if champion is not None else {}
    text = ", ".join(f"{version} {share:g} %" for version, share in split.items()) or "nothing (no champion)"
    if state.mode == "shadow":
        text += f"; v{state.challenger_version} scores every request in shadow"
    return {
        "summary": dg.MetadataValue.md(f"**{state.mode}** since {state.since.isoformat()}: {text}\n\n{state.reason}"),
        "mode": state.mode,
        "champion_version": champion or 0,
        "challenger_version": state.challenger_version or 0,
        "canary_percent": float(state.canary_percent if state.mode == "canary" else 0.0),
        "shares": dg.MetadataValue.json(split),
        "since": state.since.isoformat(),
        "reason": state.reason,
        "decided_by": state.decided_by,
    }


def deployment_event(
    state: RolloutState, champion: int | None, decision: Decision | dict | None = None, **extra: Any
) -> dg.AssetMaterialization:
    metadata = {**state_metadata(state, champion), **(decision_metadata(decision) if decision else {}), **extra}
    return dg.AssetMaterialization(asset_key=DEPLOYMENT, description=state.reason[:200], metadata=metadata)


@dg.asset(
    group_name="serving",
    kinds={"json"},
    owners=["team:ml-platform"],
    description=(
        "Which registered version answers which share of the endpoint's requests, since when and why "
        "(rollout.json and the registry's aliases). Each rollout step materializes it with the bake's "
        "figures per arm (requests, p99 latency, error rate, score drift, AUC where labelled), so a "
        "rollback shows here with its reason. Materialize it by hand to record the state as it is now."
    ),
)
def deployment(context: dg.AssetExecutionContext, storage: ArtifactStore, registry: ModelRegistry):
    state = read_state(storage.root)
    name = registry.model_name
    return dg.MaterializeResult(
        metadata={
            **state_metadata(state, registry.champion()),
            "challenger_alias": registry.alias_version(name, CHALLENGER) or 0,
        }
    )
