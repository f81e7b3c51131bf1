"""candidate_model: a model trained on the training set by `ml.train`, on the deployment's compute backend.

Every candidate is logged to MLflow (parameters, metrics, artifacts, data version, git commit,
Dagster run id), whether or not the evaluation gate later lets it into the registry.
"""

from typing import Any

import dagster as dg
from pydantic import Field

import ml.evaluation
import ml.models
import ml.train
import ml.training_config
from assets.metadata import markdown_images, ranked_table
from assets.training_set import STATE, TABLE, training_config, training_set
from ml.fingerprint import code_version
from ml.training_config import FAMILIES
from resources.compute import ComputeBackend
from resources.dvc import DvcResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

MODULE = "ml.train"
PLOT_ORDER = ("roc", "precision_recall", "calibration", "feature_importance")
CANDIDATES = ("models", "candidates")
CODE_VERSION = code_version(ml.evaluation, ml.models, ml.train, ml.training_config)


class TrainingOverrides(dg.Config):
    """Run config for one training run; empty fields take params.yaml's `training:` values."""

    model: str | None = Field(default=None, description=f"Model family: one of {', '.join(FAMILIES)}.")
    seed: int | None = Field(default=None, description="Seed for the model (the holdout keeps params.yaml's seed).")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Hyperparameters merged over params.yaml's for the chosen family."
    )


def model_name(dvc: DvcResource) -> str:
    return (dvc.params().get("registry") or {}).get("model_name") or dvc.dataset_spec().name


def _lineage(context: dg.AssetExecutionContext, dvc: DvcResource) -> dict[str, str]:
    """The exact data this candidate was trained on, by data version, for MLflow tags and the registry."""
    event = context.instance.get_latest_materialization_event(training_set.key)
    if event is None:
        raise dg.Failure(description="training_set has never been materialized; materialize it first")
    materialization = event.asset_materialization
    return {
        "keel.data_version": str(materialization.metadata["raw_data_version"].value),
        "keel.training_set_version": materialization.tags.get("dagster/data_version", "unknown"),
        # The labelled days (and their files' md5s) the training set added to the raw data.
        "keel.training_partitions": str(
            materialization.metadata["training_partitions"].value
            if "training_partitions" in materialization.metadata
            else "none"
        ),
        "keel.code_version": CODE_VERSION,
        "keel.git_commit": dvc.git_revision(),
        "keel.dagster_run_id": context.run_id,
    }


@dg.asset(
    deps=[training_set],
    group_name="training",
    kinds={"lightgbm", "scikit-learn", "mlflow"},
    owners=["team:ml-platform"],
    code_version=CODE_VERSION,
    description=(
        "A candidate model: `python -m ml.train` run on the compute backend (a local subprocess by "
        "default) through Dagster Pipes. Its artifact (native LightGBM text or JSON model, feature "
        "state, metrics, plots, sha256 manifest) is logged to MLflow with its lineage. The "
        "evaluation_gate check decides whether it may be registered."
    ),
)
def candidate_model(
    context: dg.AssetExecutionContext,
    config: TrainingOverrides,
    dvc: DvcResource,
    storage: ArtifactStore,
    compute: ComputeBackend,
    registry: ModelRegistry,
) -> dg.MaterializeResult:
    settings = training_config(dvc, config.model_dump())
    config_uri = storage.write_json(settings.to_dict(), *CANDIDATES, f"{context.run_id}.config.json")
    artifact_uri = storage.uri(*CANDIDATES, context.run_id)
    invocation = compute.run(
        context,
        MODULE,
        inputs={"features": storage.uri(*TABLE), "state": storage.uri(*STATE), "config": config_uri},
        outputs={"out": artifact_uri},
    )
    reported = invocation.get_materialize_result()
    report = reported.metadata["report"].value
    lineage = _lineage(context, dvc)
    local_dir = storage.local_copy(report["artifact_uri"])
    run_id = registry.log_training_run(
        experiment=model_name(dvc),
        run_name=f"candidate-{context.run_id[:8]}",
        params={
            "model": settings.model,
            "seed": settings.seed,
            "holdout_fraction": settings.holdout_fraction,
            "threshold": settings.threshold,
            **{f"hp.{k}": v for k, v in settings.hyperparameters.items()},
        },
        metrics={k: v for k, v in report["metrics"].items() if isinstance(v, int | float)},
        tags={**lineage, "keel.manifest_sha256": report["manifest_sha256"], "keel.model_family": settings.model},
        artifact_dir=local_dir,
    )
    metrics = report["metrics"]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(report["manifest_sha256"][:16]),
        metadata={
            **{name: dg.MetadataValue.float(float(metrics[name])) for name in ml.evaluation.METRIC_DESCRIPTIONS},
            "model_family": settings.model,
            "hyperparameters": dg.MetadataValue.json(settings.hyperparameters),
            "seed": settings.seed,
            "train_rows": report["train_rows"],
            "holdout_rows": report["holdout_rows"],
            "training_seconds": report["training_seconds"],
            "top_features": ranked_table(dict(report["top_features"]), "feature", "importance"),
            "artifact": dg.MetadataValue.path(report["artifact_uri"]),
            "manifest_sha256": report["manifest_sha256"],
            "mlflow_run_id": run_id,
            "plots": dg.MetadataValue.md(markdown_images(local_dir / "plots", PLOT_ORDER)),
            **{k.removeprefix("keel."): v for k, v in lineage.items()},
        },
    )
