"""A registered version's model card, made from what registration knows, and refreshed when an alias moves.

The card is written at registration (ml/model_card.py builds it, resources/model_cards.py keeps it)
and written again, whole, by every alias move (approve, rollback, a later registration), so its alias
history and its costs so far are those of the last move. Costs: the version's training run (the
candidate's MLflow run tags), the scoring runs that used the version (the tags batch_predictions
sets on it, one per day), and this model name's retrains beside a weekly calendar (ml/cost.py).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import dagster as dg

import ml.io
from assets.costs import COST_TAG, SCORING_COST_TAG
from assets.records import Candidate
from assets.training_set import DAY_COLUMN, window_mask
from ml.cost import calendar_comparison
from ml.features import encode_target
from ml.gate import GateDecision
from ml.model_card import bootstrap_intervals, build_card, label_balance, render_markdown, with_alias_history
from ml.params import Params
from ml.predictor import Predictor
from ml.split import HOLDOUT, TRAIN
from resources import layout
from resources.model_cards import publish_card, read_card
from resources.registry import MANIFEST_TAG, ModelRegistry
from resources.storage import ArtifactStore


def _tagged_cost(tags: dict[str, str]) -> dict[str, Any]:
    if f"{COST_TAG}.amount" not in tags:
        return {}
    return {
        "amount": float(tags[f"{COST_TAG}.amount"]),
        "unit": tags[f"{COST_TAG}.unit"],
        "basis": tags[f"{COST_TAG}.basis"],
    }


def scoring_cost(tags: dict[str, str]) -> dict[str, Any]:
    """The version's scoring runs, as batch_predictions tagged them on it (one per day, its latest), summed."""
    days = [json.loads(v) for k, v in tags.items() if k.startswith(SCORING_COST_TAG)]
    if not days:
        return {}
    unit = days[-1]["unit"]
    same = [d["amount"] for d in days if d["unit"] == unit]
    return {"runs": len(same), "amount": round(sum(same), 6), "unit": unit}


def _period(infos: list[dict[str, Any]]) -> tuple[dt.datetime, dt.datetime]:
    """The days a weekly calendar is set against: those the model name scored (first to last, whole days, as
    the versions' scoring tags name them: a simulated or backfilled day counts as the day it is), else the
    time since its first version was registered."""
    days = sorted(
        {k.removeprefix(SCORING_COST_TAG) for i in infos for k in i["tags"] if k.startswith(SCORING_COST_TAG)}
    )
    if not days:
        return dt.datetime.fromisoformat(infos[0]["created"]), dt.datetime.now(dt.UTC)
    first, last = (dt.datetime.fromisoformat(d).replace(tzinfo=dt.UTC) for d in (days[0], days[-1]))
    return first, last + dt.timedelta(days=1)


def version_costs(registry: ModelRegistry, name: str, version: int) -> dict[str, Any]:
    """The version's training cost, its scoring so far, and the model name's retrains against a weekly calendar."""
    infos = [registry.version_info(name, v) for v in registry.versions(name)]
    own = next(info for info in infos if info["version"] == version)
    training = _tagged_cost(own["tags"])
    costs: dict[str, Any] = {"training": training, "scoring": scoring_cost(own["tags"])}
    if training:
        same_unit = [c for c in (_tagged_cost(i["tags"]) for i in infos) if c and c["unit"] == training["unit"]]
        start, end = _period(infos)
        costs["calendar"] = calendar_comparison([c["amount"] for c in same_unit], training["unit"], start, end)
    return costs


def alias_moves(registry: ModelRegistry, name: str, version: int) -> list[dict[str, Any]]:
    """Every recorded move of an alias to or away from the version, oldest first."""
    return [m.to_dict() for m in registry.alias_history(name) if version in (m.to_version, m.from_version)]


def make_card(
    *,
    context: dg.AssetExecutionContext,
    candidate: Candidate,
    gate: GateDecision,
    settings: Params,
    storage: ArtifactStore,
    registry: ModelRegistry,
    version: int,
    reference: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The card of a version just registered (or resumed), and its plots."""
    name, spec = registry.model_name, settings.dataset
    human = settings.model_card.for_dataset(spec.name)  # the example's human fields stay with the example
    info = registry.version_info(name, version)
    with storage.local_copy(candidate.artifact_uri(storage)) as local:
        predictor = Predictor.load(local, expected_manifest_sha256=candidate.manifest_sha256)
        plots = {p.stem: p.read_bytes() for p in sorted((local / "plots").glob("*.png"))}
    holdout = ml.io.read_parquet(candidate.training_set.holdout_uri(storage))
    labels = encode_target(holdout, spec).to_numpy()
    intervals = bootstrap_intervals(
        labels,
        predictor.predict(holdout),
        candidate.metrics.get("threshold", settings.training.threshold),
        resamples=human.bootstrap_resamples,
        level=human.confidence_level,
        seed=human.seed,
    )
    rows = ml.io.read_parquet(candidate.training_set.rows_uri(storage))
    training_set = candidate.training_set
    window = next((w for w in training_set.windows if w.name == candidate.window), None)
    if window is not None:  # the rows the winning window trained on, not every window's
        rows = rows[window_mask(rows[DAY_COLUMN], window, training_set.raw_days) | (rows["split"] == HOLDOUT)]
    train = rows[rows["split"] == TRAIN]
    training_data = {
        "data_version": training_set.raw_data_version,
        "training_set_version": training_set.version,
        "features_version": candidate.features.version,
        "partitions": training_set.partitions,
        "raw_data_included": training_set.raw_included,
        "train_rows": len(train),
        "holdout_rows": int((rows["split"] == HOLDOUT).sum()),
        "label_balance": label_balance(encode_target(train, spec).to_numpy()),
        **(
            {
                "window": candidate.window,
                "window_reason": candidate.window_reason,
                "window_aucs": candidate.window_aucs,
                "evaluation_days": training_set.evaluation_days,
            }
            if candidate.window
            else {}
        ),
    }
    config = ml.io.read_json(layout.candidate_config(storage, candidate.run_id))
    lineage = {
        "data_version": training_set.raw_data_version,
        "git_commit": candidate.git_commit,
        "code_version": candidate.code_version,
        "training_dagster_run_id": candidate.run_id,
        "registration_dagster_run_id": context.run_id,
        "mlflow_run_id": candidate.mlflow_run_id,
        "manifest_sha256": info["tags"][MANIFEST_TAG],
    }
    card = build_card(
        model=name,
        version=version,
        created=info["created"],
        description=info["description"] or f"{name} v{version}",
        family=candidate.model_family,
        hyperparameters=config.get("hyperparameters", {}),
        human=human,
        training_data=training_data,
        intervals=intervals,
        level=human.confidence_level,
        gate={
            "decision": "passed",
            "reason": gate.reason,
            "candidate_auc": gate.candidate_auc,
            "min_auc": gate.min_auc,
            "champion_version": gate.champion_version,
            "champion_auc": gate.champion_auc,
        },
        importance=predictor.column_importance(),
        plots=list(plots),
        drift_reference=reference,
        lineage=lineage,
        alias_history=alias_moves(registry, name, version),
        cost=version_costs(registry, name, version),
        artifact_uri=info["source"],
    )
    return card, plots


def refresh_card(
    registry: ModelRegistry, storage: ArtifactStore, name: str, version: int | None
) -> dict[str, Any] | None:
    """Write the version's card again with its alias history and costs as they are now; None without a card."""
    if version is None:
        return None
    card = read_card(registry, name, version)
    if card is None:  # registered before cards existed
        return None
    card = {
        **with_alias_history(card, alias_moves(registry, name, version)),
        "cost": version_costs(registry, name, version),
    }
    return {**publish_card(registry, storage, card), "card": card}


def card_metadata(card: dict[str, Any], published: dict[str, Any]) -> dict[str, Any]:
    """The card's Markdown on the asset's page, its page's link, and where it is kept."""
    return {
        "model_card": dg.MetadataValue.md(render_markdown(card)),
        "model_card_url": dg.MetadataValue.url(published["url"]),
        "model_card_sha256": published["sha256"],
        **(
            {"sagemaker_model_card_arn": published["sagemaker_model_card_arn"]}
            if "sagemaker_model_card_arn" in published
            else {}
        ),
    }
