"""model_performance: how well a day was scored, once the day's labels have arrived."""

import dagster as dg
import numpy as np

import ml.evaluation
import ml.predictions
from assets.partitions import DAILY
from assets.records import LabelledDay, ScoredDay
from data_checks.asset_checks import read_checked_file
from ml.ids import ids_as_text
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

CHECK_NAME = "auc_within_tolerance"


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"scikit-learn"},
    owners=["team:ml-platform"],
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset="model_performance",
            description="Warns when the day's ROC AUC is below the scoring model's holdout AUC by more than "
            "retraining.max_auc_drop plus retraining.noise_z standard errors of the day's AUC (its size).",
        )
    ],
    description=(
        "A day's ROC AUC, PR AUC, log loss, Brier score and threshold metrics: its predictions joined "
        "with its labels by id. Compared with the holdout AUC of the model version that scored the "
        "day, with a noise band for the day's size. The sensor `retrain_on_drift` reads each day's AUC and "
        "its standard error and retrains when the champion's labelled AUC has decayed (orchestration/"
        "retrain_policy.py)."
    ),
)
def model_performance(
    context: dg.AssetExecutionContext,
    batch_predictions: ScoredDay,
    labels: LabelledDay,
    params: ParamsResource,
    storage: ArtifactStore,
    registry: ModelRegistry,
):
    day, settings = context.partition_key, params.load()
    spec = settings.dataset
    column = spec.id.column
    # Ids as text on both sides (ml/ids.py): a day scored with integer ids joins labels written either way.
    scored = ids_as_text(ml.predictions.read_predictions(batch_predictions.predictions_uri(storage)), column, day)
    # The labels as their checks took them in: a file replaced since (by a re-delivery the labels step has
    # not judged yet, or one it refused) is never read as the day's truth.
    truth_rows = ids_as_text(
        read_checked_file(labels.uri(settings), labels.md5, f"labels {day}"), column, f"labels {day}"
    )
    frame = scored.merge(truth_rows, on=column, how="inner")
    if frame.empty:
        raise dg.Failure(description=f"no id of the labels for {day} matches its predictions ({spec.id.column})")
    truth = (frame[spec.target.column].astype(str) == spec.target.positive).to_numpy(dtype=np.int64)
    try:
        metrics = ml.evaluation.binary_metrics(truth, frame["score"].to_numpy(), settings.training.threshold)
    except ml.evaluation.EvaluationError as error:
        raise dg.Failure(description=f"{day}: {error}") from None
    version = batch_predictions.model_version
    info = registry.version_info(batch_predictions.model, version)
    holdout_auc = float(info["tags"].get("keel.metric.roc_auc", "nan"))
    drop = holdout_auc - metrics["roc_auc"]
    positives = int(truth.sum())
    auc_se = ml.evaluation.auc_standard_error(metrics["roc_auc"], positives, len(truth) - positives)
    # A day's AUC moves by chance by a few standard errors: the band widens for small days.
    retraining = settings.retraining
    tolerance = retraining.max_auc_drop + retraining.noise_z * auc_se
    yield dg.MaterializeResult(
        metadata={
            **{name: dg.MetadataValue.float(float(metrics[name])) for name in ml.evaluation.METRIC_DESCRIPTIONS},
            "labelled_rows": len(frame),
            "positives": positives,
            "negatives": len(truth) - positives,
            "auc_se": float(auc_se),
            "model_version": version,
            "model_holdout_auc": holdout_auc,
            "auc_drop": float(drop),
            "max_auc_drop": retraining.max_auc_drop,
            "auc_band": float(tolerance),
            "degraded": bool(drop > tolerance),
        },
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_NAME,
        passed=bool(drop <= tolerance),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"roc_auc": float(metrics["roc_auc"]), "model_holdout_auc": holdout_auc, "auc_drop": float(drop)},
    )
