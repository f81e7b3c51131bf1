"""batch_predictions: a day's customers scored with the model behind the `champion` alias.

Scoring runs `python -m ml.score` on the deployment's compute backend (a local subprocess by
default), in chunks, with the same feature code as training; each day's file is replaced in one
step, so a failed or killed run leaves the previous predictions in place.
"""

import tempfile
from pathlib import Path

import dagster as dg

import ml.score
from assets.candidate_model import model_name
from assets.daily import DAILY, incoming_uri
from assets.evaluation_gate import CHAMPION
from assets.incoming_data import incoming_data
from data_checks.asset_checks import require_checked_file, require_passing_checks
from ml.artifact import MANIFEST, publish
from ml.fingerprint import code_version
from resources.compute import ComputeBackend
from resources.dvc import DvcResource
from resources.registry import MANIFEST_TAG, ModelRegistry
from resources.storage import ArtifactStore

MODULE = "ml.score"
FOLDER = "predictions"


def champion(registry: ModelRegistry, name: str) -> tuple[int, str]:
    version = registry.alias_version(name, CHAMPION)
    if version is None:
        raise dg.Failure(description=f"{name} has no {CHAMPION}: run the train_model job first, then score")
    return version, registry.version_info(name, version)["tags"][MANIFEST_TAG]


def published_model(storage: ArtifactStore, registry: ModelRegistry, name: str, version: int) -> str:
    """The version's verified artifact in the deployment's storage, where any backend can read it."""
    parts = ("models", "registered", name, f"v{version}")
    if not storage.exists(*parts, MANIFEST):
        with tempfile.TemporaryDirectory(prefix="keel-publish-") as tmp:
            local = registry.download(name, version, Path(tmp) / "model")
            publish(local, storage.uri(*parts))
    return storage.uri(*parts)


@dg.asset(
    partitions_def=DAILY,
    deps=[incoming_data],
    group_name="scoring",
    kinds={"lightgbm", "mlflow", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.score),
    description=(
        "A day's churn scores (id, score) from the model behind the `champion` alias, computed by "
        "`python -m ml.score` on the compute backend in chunks with the training feature code. Each "
        "day records the exact model version and artifact hash it was scored with; re-scoring a "
        "range after a new champion is one backfill. Written all-or-nothing."
    ),
)
def batch_predictions(
    context: dg.AssetExecutionContext,
    dvc: DvcResource,
    storage: ArtifactStore,
    compute: ComputeBackend,
    registry: ModelRegistry,
) -> dg.MaterializeResult:
    day = context.partition_key
    checked = require_passing_checks(context, incoming_data.key, partition=day)
    rows_uri = incoming_uri(dvc, day)
    require_checked_file(rows_uri, checked, f"incoming_data {day}")
    name = model_name(dvc)
    version, manifest_sha256 = champion(registry, name)
    scoring = dvc.params().get("scoring") or {}
    config_uri = storage.write_json(
        {
            "expected_manifest_sha256": manifest_sha256,
            "id_column": dvc.dataset_spec().id.column,
            "chunk_rows": int(scoring.get("chunk_rows", 100_000)),
            "model_version": str(version),
        },
        FOLDER,
        f"{day}.config.json",
    )
    invocation = compute.run(
        context,
        MODULE,
        inputs={"model": published_model(storage, registry, name, version), "rows": rows_uri, "config": config_uri},
        outputs={"predictions": storage.uri(FOLDER, f"{day}.parquet")},
    )
    report = invocation.get_materialize_result().metadata["report"].value
    return dg.MaterializeResult(
        data_version=dg.DataVersion(report["predictions_sha256"][:16]),
        metadata={
            "dagster/row_count": report["rows"],
            "model": name,
            "model_version": version,
            "model_manifest_sha256": manifest_sha256,
            "incoming_data_version": checked,
            "score_mean": float(report["score_mean"]),
            "score_quantiles": dg.MetadataValue.json(report["score_quantiles"]),
            "seconds": float(report["seconds"]),
            "rows_per_second": float(report["rows_per_second"]),
            "predictions": dg.MetadataValue.path(report["predictions_uri"]),
            "rows_path": dg.MetadataValue.path(rows_uri),
        },
    )
