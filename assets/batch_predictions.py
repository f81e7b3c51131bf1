"""batch_predictions: a day's customers scored with the model behind the `champion` alias.

Scoring runs `python -m ml.score` on the deployment's compute backend (local subprocesses by
default), in chunks, with the same feature code as training, as up to `scoring.shards` shards at
once (a process each locally, an instance each in a cloud job; fewer for a small day, see
`scoring.min_rows_per_shard`). The day is N part files and a capture named
by one manifest written last (ml/predictions.py), so a failed shard or a killed run leaves the
previous day in place. The same pass keeps the day's capture (a seeded sample of the scored rows,
merged from the shards' samples), which is all the drift report reads.
"""

import dagster as dg

import ml.io
import ml.predictions
import ml.score
from assets.costs import cost_metadata, invocation_cost, record_scoring_cost
from assets.partitions import DAILY
from assets.records import IncomingDay, ScoredDay
from data_checks.asset_checks import require_passing_checks
from ml.fingerprint import code_version
from resources import layout
from resources.compute import ComputeBackend
from resources.params import ParamsResource
from resources.published import published_copy
from resources.registry import CHAMPION, MANIFEST_TAG, ModelRegistry
from resources.storage import ArtifactStore

MODULE = "ml.score"


def champion(registry: ModelRegistry) -> tuple[int, str]:
    """The champion's version and manifest sha256; no champion is a clear failure."""
    version = registry.champion()
    if version is None:
        raise dg.Failure(
            description=f"{registry.model_name} has no {CHAMPION}: run the train_model job first, then score"
        )
    return version, registry.version_info(registry.model_name, version)["tags"][MANIFEST_TAG]


def published_model(storage: ArtifactStore, registry: ModelRegistry, version: int) -> str:
    """The version's verified artifact in the deployment's storage, where any backend can read it; a copy
    that no longer verifies is replaced by the registry's verified one (resources/published.py)."""
    uri, note = published_copy(storage, registry, registry.model_name, version)
    if note:
        dg.get_dagster_logger().warning(note)
    return uri


@dg.asset(
    partitions_def=DAILY,
    group_name="scoring",
    kinds={"lightgbm", "mlflow", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.score),
    description=(
        "A day's churn scores (id, score) from the model behind the `champion` alias, computed by "
        "`python -m ml.score` on the compute backend in chunks with the training feature code, "
        "from the checked version of the day's file only. Each day records the exact model version "
        "and artifact hash it was scored with; re-scoring a range after a new champion is one "
        "backfill. Written all-or-nothing, with the capture the drift report reads."
    ),
)
def batch_predictions(
    context: dg.AssetExecutionContext,
    incoming_data: IncomingDay,
    params: ParamsResource,
    storage: ArtifactStore,
    compute: ComputeBackend,
    registry: ModelRegistry,
) -> dg.Output[ScoredDay]:
    day = context.partition_key
    require_passing_checks(
        context.instance, context.asset_key_for_input("incoming_data"), incoming_data.run_id, partition=day
    )
    settings = params.load()
    shards = settings.scoring.shards_for(incoming_data.rows)
    version, manifest_sha256 = champion(registry)
    config_uri = layout.scoring_config(storage, day)
    ml.io.write_json(
        {
            "expected_manifest_sha256": manifest_sha256,
            "id_column": settings.dataset.id.column,
            "chunk_rows": settings.scoring.chunk_rows,
            "compiled": settings.scoring.compiled,
            "model_version": str(version),
            "rows_md5": incoming_data.md5,  # the scorer refuses any other version of the file
            "capture_rows": settings.drift.current_rows,
            "capture_seed": settings.drift.seed,
            "shards": shards,
        },
        config_uri,
    )
    rows_uri = incoming_data.uri(settings)
    day_uri, attempt = layout.predictions(storage, day), layout.prediction_attempt(storage, day, context.run_id)
    # N shards of the day write their parts into a fresh attempt folder; the day becomes that attempt
    # only when publish() replaces its manifest, after every shard succeeded.
    invocation = compute.run(
        context,
        MODULE,
        inputs={"model": published_model(storage, registry, version), "rows": rows_uri, "config": config_uri},
        outputs={"parts": attempt},
        replicas=shards,
    )
    try:
        report = ml.predictions.publish(day_uri, attempt, shards, settings.drift.current_rows, settings.drift.seed)
    except ml.predictions.PredictionsError as error:
        raise dg.Failure(description=f"batch_predictions {day}: {error}") from None
    cost = invocation_cost(invocation, settings, usage=report["usage"])  # every shard's CPU, the job's time
    record_scoring_cost(registry, registry.model_name, version, day, cost)
    scored = ScoredDay(
        run_id=context.run_id,
        day=day,
        incoming=incoming_data,
        model=registry.model_name,
        model_version=version,
        model_manifest_sha256=manifest_sha256,
        rows=report["rows"],
    )
    return dg.Output(
        scored,
        data_version=dg.DataVersion(report["content_sha256"][:16]),
        metadata={
            "dagster/row_count": report["rows"],
            "model": scored.model,
            "model_version": version,
            "model_manifest_sha256": manifest_sha256,
            "incoming_data_version": incoming_data.md5,
            "score_mean": float(report["score_mean"]),
            "score_quantiles": dg.MetadataValue.json(report["score_quantiles"]),
            "seconds": float(report["seconds"]),
            "rows_per_second": float(report["rows_per_second"]),
            "predictor": report["predictor"],
            "predictions": dg.MetadataValue.path(day_uri),
            "predictions_manifest_sha256": report["manifest_sha256"],
            "shards": report["shards"],
            "shard_split": report["split"],
            "shard_seconds": dg.MetadataValue.json(report["shard_seconds"]),
            "capture": dg.MetadataValue.path(report["capture_uri"]),
            "capture_rows": report["capture_rows"],
            "rows_path": dg.MetadataValue.path(rows_uri),
            **cost_metadata(cost),
        },
    )
