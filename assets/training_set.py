"""training_set: the checked raw rows split into train / holdout, and the features built from them.

The feature state is fitted on the train rows only, so the holdout's statistics never reach the
imputation values, clipping bounds or category levels the model is judged with.
"""

import dagster as dg

import ml.features
import ml.split
from assets.metadata import column_schema
from assets.raw_data import dataset_spec, raw_data, raw_path
from data_checks.asset_checks import require_passing_checks
from ml.fingerprint import code_version
from ml.io import file_digest
from ml.split import HOLDOUT, TRAIN, SplitError, build_training_set
from ml.training_config import TrainingConfig, TrainingConfigError
from resources.dvc import DvcResource
from resources.storage import ArtifactStore

FOLDER = "training_set"
TABLE = (FOLDER, "features.parquet")  # id, [timestamp], split, features, label
STATE = (FOLDER, "feature_state.json")
HOLDOUT_ROWS = (FOLDER, "holdout_rows.parquet")  # raw holdout rows: any model is scored on them the same way


def training_config(dvc: DvcResource, overrides: dict | None = None) -> TrainingConfig:
    try:
        return TrainingConfig.from_params(dvc.params().get("training"), overrides)
    except TrainingConfigError as error:
        raise dg.Failure(description=f"params.yaml: {error}") from None


@dg.asset(
    deps=[raw_data],
    group_name="training",
    kinds={"pandas", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.features, ml.split),
    description=(
        "The checked raw data split into train and holdout rows (seeded by id, or by time when the "
        "spec has a timestamp), with the feature table (id, split, features, 0/1 label) and the "
        "feature state fitted on the train rows. Scoring applies the same state with the same code "
        "(ml/features.py)."
    ),
)
def training_set(context: dg.AssetExecutionContext, dvc: DvcResource, storage: ArtifactStore) -> dg.MaterializeResult:
    checked_version = require_passing_checks(context, raw_data.key)
    raw_file = raw_path(dvc)
    on_disk = file_digest(str(dvc.path(raw_file)), "md5")  # DVC's hash of a file is its md5
    if on_disk != checked_version:
        raise dg.Failure(
            f"{raw_file} (md5 {on_disk}) is not the version raw_data last materialized and checked "
            f"({checked_version}); it changed outside Dagster. Materialize raw_data with its checks first."
        )
    spec, config = dataset_spec(dvc), training_config(dvc)
    raw = dvc.read_parquet(raw_file)
    try:
        built = build_training_set(raw, spec, dvc.feature_config(), fraction=config.holdout_fraction, seed=config.seed)
    except SplitError as error:
        raise dg.Failure(description=str(error)) from None
    table, state = built.table, built.state
    # State first, table last: the table on disk is never newer than the state it was built with.
    state_uri = storage.write_json(state.to_dict(), *STATE)
    holdout_uri = storage.write_parquet(built.holdout_rows, *HOLDOUT_ROWS)
    table_uri = storage.write_parquet(table, *TABLE)
    by_split = table.groupby("split")["label"]
    version = file_digest(table_uri)[:16]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": len(table),
            "dagster/column_schema": column_schema(table),
            "train_rows": int(by_split.size()[TRAIN]),
            "holdout_rows": int(by_split.size()[HOLDOUT]),
            "positive_rate_train": float(by_split.mean()[TRAIN]),
            "positive_rate_holdout": float(by_split.mean()[HOLDOUT]),
            "holdout": (
                f"latest {config.holdout_fraction:.0%} by {spec.timestamp.column}"
                if spec.timestamp
                else f"{config.holdout_fraction:.0%} by seeded hash of {spec.id.column} (seed {config.seed})"
            ),
            "feature_count": len(state.columns),
            "feature_state_fitted_rows": state.fitted_rows,
            "raw_data_version": checked_version,
            "table": dg.MetadataValue.path(table_uri),
            "feature_state": dg.MetadataValue.path(state_uri),
            "holdout_rows_table": dg.MetadataValue.path(holdout_uri),
        },
    )
