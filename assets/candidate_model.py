"""candidate_model: a model trained on the features by `ml.train`, on the deployment's compute backend.

With labelled days, one model per window of the training set (its days, with or without the raw
rows), each through the same entry point, judged on the evaluation days (the newest whole labelled
days, which none trained on). The default window is the candidate unless another is better beyond
the noise (ml/windows.py choose_window); when the training set has lagged windows (the windows
without their newest days up to the night the new version first scores), their models, trained too,
choose the window, and the window's model on its full days is the candidate. Its card and lineage
say which window won and why. Every candidate is logged to MLflow (parameters, metrics, artifacts, data version, git commit,
Dagster run id), whether or not the evaluation gate later lets it into the registry.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd
import pydantic
from pydantic import Field

import ml.evaluation
import ml.io
import ml.models
import ml.split
import ml.train
import ml.training_config
import ml.windows
from assets.costs import cost_metadata, cost_tags, invocation_cost
from assets.metadata import markdown_images, ranked_table
from assets.records import Candidate, Features, WindowDays
from assets.training_set import DAY_COLUMN, window_mask
from ml.features import encode_target
from ml.fingerprint import code_version
from ml.predictor import Predictor
from ml.spec import DatasetSpec
from ml.training_config import FAMILIES
from resources import layout
from resources.compute import ComputeBackend
from resources.dvc import DvcResource
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

MODULE = "ml.train"
PLOT_ORDER = ("roc", "precision_recall", "calibration", "feature_importance")
CODE_VERSION = code_version(ml.evaluation, ml.models, ml.train, ml.training_config, ml.windows)


class TrainingOverrides(dg.Config):
    """Run config for one training run; empty fields take params.yaml's `training:` values."""

    model: str | None = Field(default=None, description=f"Model family: one of {', '.join(FAMILIES)}.")
    seed: int | None = Field(default=None, description="Seed for the model (the holdout keeps params.yaml's seed).")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Hyperparameters merged over params.yaml's for the chosen family."
    )


def lineage_tags(features: Features, code_version: str, git_commit: str, run_id: str) -> dict[str, str]:
    """The exact data and code a candidate was trained on, as MLflow tags (the registry copies them)."""
    training_set = features.training_set
    return {
        "keel.data_version": training_set.raw_data_version,
        "keel.training_set_version": training_set.version,
        "keel.features_version": features.version,
        # The labelled days (and their files' md5s) the training set added to the raw data.
        "keel.training_partitions": training_set.partitions,
        "keel.code_version": code_version,
        "keel.git_commit": git_commit,
        "keel.dagster_run_id": run_id,
    }


def candidate_lineage(candidate: Candidate) -> dict[str, str]:
    """The lineage tags, and which window the candidate learned from and why (the version copies them)."""
    tags = lineage_tags(candidate.features, candidate.code_version, candidate.git_commit, candidate.run_id)
    if candidate.window:
        tags |= {"keel.window": candidate.window, "keel.window_reason": candidate.window_reason}
    return tags


def window_rows(table: pd.DataFrame, window: WindowDays, raw_days: Sequence[str] = ()) -> pd.DataFrame:
    """The feature table's holdout (the evaluation days) and the train rows of the window's days (the
    raw data's days among them: their raw rows); with a half-life, each row weighed by its day's recency
    (ml/windows.py day_weights)."""
    keep = (table[ml.split.SPLIT] == ml.split.HOLDOUT) | window_mask(table[DAY_COLUMN], window, raw_days)
    rows = table[keep].reset_index(drop=True)
    if window.half_life_days is not None:
        weight_of = ml.windows.day_weights(window.days, window.half_life_days)
        rows[ml.train.WEIGHT] = rows[DAY_COLUMN].map(weight_of).fillna(1.0).to_numpy()  # holdout rows: unused
    return rows.drop(columns=DAY_COLUMN)


def evaluation_scores(
    reports: dict[str, dict[str, Any]], features: Features, spec: DatasetSpec, storage: ArtifactStore
) -> tuple[Any, dict[str, Any]]:
    """The evaluation days' labels, and each window's scores of them (its artifact, verified)."""
    rows = ml.io.read_parquet(features.training_set.holdout_uri(storage))
    scores = {}
    for name, report in reports.items():
        with storage.local_copy(report["artifact_uri"]) as local:
            scores[name] = Predictor.load(local, expected_manifest_sha256=report["manifest_sha256"]).predict(rows)
    return encode_target(rows, spec).to_numpy(), scores


def summed_cost(costs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cost for the windows' trainings: amounts (and CPU-seconds) add up when they share a unit."""
    if len(costs) == 1 or len({c["unit"] for c in costs}) > 1:
        return costs[0]
    return {
        **costs[0],
        "amount": sum(c["amount"] for c in costs),
        "cpu_seconds": sum(float(c.get("cpu_seconds", 0.0)) for c in costs),
        "basis": f"{costs[0]['basis']}, summed over {len(costs)} windows' trainings",
    }


@dg.asset(
    group_name="training",
    kinds={"lightgbm", "scikit-learn", "mlflow"},
    owners=["team:ml-platform"],
    code_version=CODE_VERSION,
    description=(
        "A candidate model: `python -m ml.train` run on the compute backend (a local subprocess by "
        "default) through Dagster Pipes, on the feature table. Its artifact (native LightGBM text or "
        "JSON model, feature state, metrics, plots, sha256 manifest) is logged to MLflow with its "
        "lineage. With labelled days, one model per window of the training set; the default window wins unless "
        "another is better on the evaluation days beyond the noise, as judged by the windows' models trained "
        "without their newest days up to the night the new version first scores (when the training set has "
        "them). The evaluation_gate check decides whether it may be registered."
    ),
)
def candidate_model(
    context: dg.AssetExecutionContext,
    config: TrainingOverrides,
    features: Features,
    params: ParamsResource,
    dvc: DvcResource,
    storage: ArtifactStore,
    compute: ComputeBackend,
    registry: ModelRegistry,
) -> dg.Output[Candidate]:
    try:
        settings = params.load().training.resolve(config.model, config.seed, config.hyperparameters)
    except pydantic.ValidationError as error:
        raise dg.Failure(description=f"candidate_model config: {error.errors()[0]['msg']}") from None
    run = context.run_id
    config_uri = layout.candidate_config(storage, run)
    ml.io.write_json(settings.to_dict(), config_uri)
    inputs = {"state": features.state_uri(storage), "config": config_uri}
    windows = features.training_set.windows
    reports: dict[str, dict[str, Any]] = {}
    costs = []
    if not windows:
        invocation = compute.run(
            context,
            MODULE,
            inputs={"features": features.table_uri(storage), **inputs},
            outputs={"out": layout.candidate(storage, run)},
        )
        reports[""] = invocation.get_materialize_result().metadata["report"].value
        costs.append(invocation_cost(invocation, params.load()))
    else:
        table = ml.io.read_parquet(features.table_uri(storage))
        raw_days = features.training_set.raw_days
        lagged = features.training_set.lagged_windows
        # The lagged windows (the training set's choice_gap) are trained under "<name>.lagged": a dot no
        # window's name has.
        for name, window in [(w.name, w) for w in windows] + [(f"{w.name}.lagged", w) for w in lagged]:
            table_uri = layout.candidate_window(storage, run, name, ".features.parquet")
            ml.io.write_parquet(window_rows(table, window, raw_days), table_uri)
            context.log.info(f"window {name}: {window.describe()}")
            invocation = compute.run(
                context,
                MODULE,
                inputs={"features": table_uri, **inputs},
                outputs={"out": layout.candidate_window(storage, run, name)},
            )
            reports[name] = invocation.get_materialize_result().metadata["report"].value
            costs.append(invocation_cost(invocation, params.load()))
    lagged_reports = {name.removesuffix(".lagged"): r for name, r in reports.items() if name.endswith(".lagged")}
    reports = {name: r for name, r in reports.items() if not name.endswith(".lagged")}
    aucs = {name: float(report["metrics"]["roc_auc"]) for name, report in reports.items()}
    if windows:
        gate = params.load().gate
        spec = params.load().dataset
        labels, scores = evaluation_scores(reports, features, spec, storage)
        lagged_scores = evaluation_scores(lagged_reports, features, spec, storage)[1] if lagged_reports else None
        chosen, why, _ = ml.windows.choose_window(
            labels,
            scores,
            lagged_scores,
            features.training_set.choice_gap,
            confidence=gate.confidence,
            resamples=gate.resamples,
            seed=gate.seed,
        )
        described = next(w for w in windows if w.name == chosen).describe()
        why = f"{why}; trained on {described}"
    else:
        chosen, why = "", ""
    report = reports[chosen]
    cost = summed_cost(costs)
    metrics = report["metrics"]
    git_commit = dvc.git_revision()
    lineage = lineage_tags(features, CODE_VERSION, git_commit, run)
    with storage.local_copy(report["artifact_uri"]) as local_dir:
        mlflow_run = registry.log_training_run(
            experiment=registry.model_name,
            run_name=f"candidate-{run[:8]}",
            params={
                "model": settings.model,
                "seed": settings.seed,
                "holdout_fraction": settings.holdout_fraction,
                "threshold": settings.threshold,
                **{f"hp.{k}": v for k, v in settings.hyperparameters.items()},
                **({"window": chosen} if chosen else {}),
            },
            metrics={
                **{k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
                **({f"window.{name}.roc_auc": auc for name, auc in aucs.items()} if chosen else {}),
                **{
                    f"window.{name}.lagged.roc_auc": float(r["metrics"]["roc_auc"])
                    for name, r in lagged_reports.items()
                },
            },
            tags={
                **lineage,
                **({"keel.window": chosen, "keel.window_reason": why} if chosen else {}),
                "keel.manifest_sha256": report["manifest_sha256"],
                "keel.model_family": settings.model,
                **cost_tags(cost),
            },
            artifact_dir=local_dir,
        )
        plots = dg.MetadataValue.md(markdown_images(local_dir / "plots", PLOT_ORDER))  # read while the copy exists
    candidate = Candidate(
        run_id=run,
        features=features,
        manifest_sha256=report["manifest_sha256"],
        mlflow_run_id=mlflow_run,
        model_family=settings.model,
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        code_version=CODE_VERSION,
        git_commit=git_commit,
        window=chosen,
        window_reason=why,
        window_aucs=aucs if chosen else {},
    )
    return dg.Output(
        candidate,
        data_version=dg.DataVersion(candidate.manifest_sha256[:16]),
        metadata={
            **{name: dg.MetadataValue.float(float(metrics[name])) for name in ml.evaluation.METRIC_DESCRIPTIONS},
            "model_family": settings.model,
            "hyperparameters": dg.MetadataValue.json(settings.hyperparameters),
            **({"window": chosen, "window_reason": why, "window_aucs": dg.MetadataValue.json(aucs)} if chosen else {}),
            "seed": settings.seed,
            "train_rows": report["train_rows"],
            "holdout_rows": report["holdout_rows"],
            "training_seconds": report["training_seconds"],
            **cost_metadata(cost),
            "top_features": ranked_table(dict(report["top_features"]), "feature", "importance"),
            "artifact": dg.MetadataValue.path(report["artifact_uri"]),
            "manifest_sha256": candidate.manifest_sha256,
            "mlflow_run_id": mlflow_run,
            "plots": plots,
            **{k.removeprefix("keel."): v for k, v in lineage.items()},
        },
    )
