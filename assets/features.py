"""features: the training feature table and the fitted feature state (ml/features.py)."""

import hashlib
import json

import dagster as dg

import ml.features
from assets.metadata import column_schema
from assets.raw_data import dataset_spec, raw_data, raw_path
from data_checks.asset_checks import require_passing_checks
from ml.features import feature_table, fit_features
from ml.fingerprint import code_version
from ml.io import file_digest
from resources.dvc import DvcResource
from resources.storage import ArtifactStore

TABLE = ("features", "training_features.parquet")
STATE = ("features", "feature_state.json")


@dg.asset(
    deps=[raw_data],
    group_name="data",
    kinds={"pandas", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.features),
    description=(
        "The training feature table (id, features, 0/1 label) and the feature state fitted on it: "
        "imputation values, clipping bounds and category levels as JSON. Scoring applies the same "
        "state with the same code (ml/features.py)."
    ),
)
def features(context: dg.AssetExecutionContext, dvc: DvcResource, storage: ArtifactStore) -> dg.MaterializeResult:
    checked_version = require_passing_checks(context, raw_data.key)
    raw_file = raw_path(dvc)
    on_disk = file_digest(str(dvc.path(raw_file)), "md5")  # DVC's hash of a file is its md5
    if on_disk != checked_version:
        raise dg.Failure(
            f"{raw_file} (md5 {on_disk}) is not the version raw_data last materialized and checked "
            f"({checked_version}); it changed outside Dagster. Materialize raw_data with its checks first."
        )
    spec = dataset_spec(dvc)
    raw = dvc.read_parquet(raw_file)
    state = fit_features(raw, spec, dvc.feature_config())
    table = feature_table(raw, state, spec, with_target=True)
    state_json = state.to_dict()
    # State first, table second: the table on disk is never newer than the state it was built with.
    state_uri = storage.write_json(state_json, *STATE)
    table_uri = storage.write_parquet(table, *TABLE)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "dagster/column_schema": column_schema(table),
            "feature_count": len(state.columns),
            "positive_rate": float(table["label"].mean()),
            "raw_data_version": checked_version,
            "feature_state_sha256": hashlib.sha256(json.dumps(state_json, sort_keys=True).encode()).hexdigest(),
            "table": dg.MetadataValue.path(table_uri),
            "feature_state": dg.MetadataValue.path(state_uri),
        }
    )
