"""drift_report: a day's Evidently data-drift and prediction-drift report, against the reference
profile stored with the model version that scored the day, plus a warning check in the UI."""

import math
import tempfile
from pathlib import Path

import dagster as dg

import ml.drift
import ml.drift_calibration
import ml.drift_impact
import ml.features
import ml.io
import ml.models
import ml.performance_estimate
import ml.predictor
from assets.partitions import DAILY
from assets.records import ScoredDay
from ml.fingerprint import code_version
from ml.html_safety import markdown_text
from ml.predictor import Predictor
from resources import layout
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

CHECK_NAME = "no_drift"
# What the importance is computed with: a change to it computes each model's importance again.
IMPORTANCE_CODE = code_version(ml.predictor, ml.models, ml.features)


def column_importance(storage: ArtifactStore, scored: ScoredDay, predictor: Predictor) -> dict[str, float]:
    """The scoring model's importance per column, computed once per model (by its manifest sha256) and
    kept in the artifact store: a model's importance never changes."""
    uri = layout.model_importance(storage, scored.model, scored.model_manifest_sha256)
    if ml.io.exists(uri):
        kept = ml.io.read_json(uri)
        if kept.get("manifest_sha256") == scored.model_manifest_sha256 and kept.get("code") == IMPORTANCE_CODE:
            return kept["importance"]
    importance = predictor.column_importance()
    document = {"manifest_sha256": scored.model_manifest_sha256, "code": IMPORTANCE_CODE, "importance": importance}
    ml.io.write_json(document, uri)
    return importance


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def columns_table(result: ml.drift.DriftResult) -> dg.TableMetadataValue:
    records = [
        dg.TableRecord(
            {
                "column": c["column"],
                "kind": c["kind"],
                "test": c["method"],
                "score": "-" if c["score"] is None else f"{c['score']:.4f}",
                "threshold": round(float(c["threshold"]), 4),
                "drifted": bool(c["drifted"]),
                "importance": float(c["importance"]),
                "impact": "-" if c["impact"] is None else f"{c['impact']:.3f}",
                "reason": c["reason"],
            }
        )
        for c in sorted(result.columns, key=lambda c: (not c["drifted"], -c["importance"], c["column"]))
    ]
    return dg.MetadataValue.table(
        records,
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column"),
                dg.TableColumn("kind"),
                dg.TableColumn("test"),
                dg.TableColumn("score", description="the test's distance; '-': not tested"),
                dg.TableColumn("threshold", "float", description="calibrated on the reference at this day's size"),
                dg.TableColumn("drifted", "bool"),
                dg.TableColumn("importance", "float", description="the column's share of the model's importance"),
                dg.TableColumn(
                    "impact",
                    description="how far the day's values move the model's scores, in sd of the reference's scores",
                ),
                dg.TableColumn("reason"),
            ]
        ),
    )


def summary(result: ml.drift.DriftResult, day: str, version: int) -> str:
    """A few short lines (the UI shows markdown metadata in a narrow column, without wrapping code)."""
    prediction = result.prediction
    drifted = ", ".join(markdown_text(c) for c in result.drifted_columns) or "none"  # names from the data
    performance = result.performance
    lines = [
        f"**{result.verdict}** on {day}, scored by v{version}; rules fired: {', '.join(result.rules) or 'none'}",
        "",
        f"- drifted columns: {drifted}",
    ]
    if result.impact is not None:
        compare = "≥" if result.impact >= result.impact_threshold else "<"
        lines.append(
            f"- impact: they move the model's scores by {result.impact:.3f} {compare} {result.impact_threshold:.3f} "
            "(sd of the reference's scores)"
        )
    lines += [
        f"- they carry {result.drift_share:.2f} of the model's importance "
        f"({len(result.drifted_columns)} of {len(result.columns)} columns)",
        f"- prediction drift: {'yes' if prediction['drifted'] else 'no'} "
        f"(score {float(prediction['score']):.3f}, threshold {float(prediction['threshold']):.3f})",
        f"- estimated AUC (no labels): {performance['estimated_auc']:.3f} vs the reference's "
        f"{performance['reference_estimated_auc']:.3f}{' (a drop beyond noise)' if performance['dropped'] else ''}",
        f"- rows: {result.current_rows} current, {result.reference_rows} reference",
        "- thresholds: calibrated on the reference at this day's size",
    ]
    return "\n".join(lines)


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"evidently", "html"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.drift, ml.drift_calibration, ml.drift_impact, ml.performance_estimate),
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset="drift_report",
            description="Warns (does not block) when the day's verdict is drift; the retraining sensor acts on it.",
        )
    ],
    description=(
        "An Evidently report per day: data drift of each feature column and prediction drift of the "
        "scores, against the reference profile stored with the model version that scored the day "
        "(its newest holdout rows and their scores), on the day's capture (the seeded sample the "
        "scorer kept). The verdict is drift when a rule fires: the drifted columns move the model's scores "
        "(impact), the scores' distribution is outside normal (prediction), or the AUC estimated from the "
        "scores alone drops (estimated performance). The metadata carries a summary, the verdict and the "
        "rules that fired with their figures (`because`), the drift share, the drifted columns and each "
        "column's test, score and impact; `report_url` opens the full Evidently HTML report "
        "(served by `make ui` locally, the cloud console otherwise). The sensor `retrain_on_drift` "
        "reads the verdict."
    ),
)
def drift_report(
    context: dg.AssetExecutionContext,
    batch_predictions: ScoredDay,
    params: ParamsResource,
    storage: ArtifactStore,
    registry: ModelRegistry,
):
    day, settings = context.partition_key, params.load()
    spec, version = settings.dataset, batch_predictions.model_version
    current = ml.drift.load_capture(batch_predictions.capture_uri(storage), spec)
    with tempfile.TemporaryDirectory(prefix="keel-drift-") as tmp:
        reference = ml.io.read_parquet(str(registry.reference(batch_predictions.model, version, tmp)))
        # The model that scored the day, verified against the manifest it scored with: drift is weighed by
        # what it costs this model (its scores move; its importance per column, a figure).
        local = registry.download(batch_predictions.model, version, Path(tmp) / "model")
        predictor = Predictor.load(local, expected_manifest_sha256=batch_predictions.model_manifest_sha256)
        importance = column_importance(storage, batch_predictions, predictor)
        result = ml.drift.drift_report(
            reference,
            current,
            spec,
            drift_share=settings.drift.drift_share,
            importance=importance,
            seed=settings.drift.seed,
            predict=ml.drift.profile_predict(predictor.predict, spec),
            settings=ml.drift.VerdictSettings.of(settings.drift),
        )
    html_uri = layout.drift_report(storage, day)
    page, bundle = ml.drift.with_shared_bundle(result.html)
    if bundle is not None:  # Evidently's script, once beside every day's page (about 3.5 MB)
        bundle_uri = layout.drift_script(storage, bundle)
        if not ml.io.exists(bundle_uri):
            with ml.io.atomic_output(bundle_uri) as tmp:
                tmp.write_text(ml.drift.evidently_bundle()[1], encoding="utf-8")
    with ml.io.atomic_output(html_uri) as tmp:
        tmp.write_text(page, encoding="utf-8")
    text = summary(result, day, version)
    link = storage.browser_url(html_uri)
    # Insertion order is the UI's order: what a person reads first, the per-column table last.
    yield dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(text),
            **({"report_url": dg.MetadataValue.url(link)} if link else {}),
            "verdict": result.verdict,
            "because": result.because,
            "rules_fired": dg.MetadataValue.json(result.rules),
            "drift_detected": result.verdict == "drift",
            "dataset_drift": result.dataset_drift,
            "drift_share": float(result.drift_share),
            "drift_share_threshold": float(result.drift_share_threshold),
            "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
            "prediction_drift": bool(result.prediction["drifted"]),
            "prediction_drift_score": float(result.prediction["score"]),
            "prediction_drift_threshold": float(result.prediction["threshold"]),
            **({"drift_impact": float(result.impact)} if result.impact is not None else {}),
            "drift_impact_threshold": float(result.impact_threshold),
            "estimated_auc": _finite(result.performance["estimated_auc"]),
            "reference_estimated_auc": _finite(result.performance["reference_estimated_auc"]),
            "estimated_auc_drop": _finite(result.performance["drop"]),
            "estimated_auc_drop_se": _finite(result.performance["drop_se"]),
            "estimated_performance_drop": bool(result.performance["dropped"]),
            "model_version": version,
            "current_rows": result.current_rows,
            "partition_rows": batch_predictions.rows,
            "reference_rows": result.reference_rows,
            "report": dg.MetadataValue.path(html_uri),
            "columns": columns_table(result),
        },
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_NAME,
        passed=result.verdict != "drift",
        severity=dg.AssetCheckSeverity.WARN,
        description=result.because,
        metadata={
            "rules_fired": dg.MetadataValue.json(result.rules),
            "drift_share": float(result.drift_share),
            "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
            "prediction_drift": bool(result.prediction["drifted"]),
        },
    )
