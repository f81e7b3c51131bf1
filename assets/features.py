"""features: the feature state fitted on a training set's train rows, and the feature table of all its rows.

The state (imputation values, clipping bounds, category levels; plain JSON) is what scoring applies
to every later row through the same code (ml/features.py); fitting it on the train rows only keeps
the holdout's statistics out of the values the model is judged with.
"""

import dagster as dg

import ml.features
import ml.io
import ml.split
from assets.metadata import column_schema
from assets.records import Features, TrainingSet
from assets.training_set import DAY_COLUMN
from ml.features import FeatureError
from ml.fingerprint import code_version
from ml.io import file_digest
from resources import layout
from resources.params import ParamsResource
from resources.storage import ArtifactStore


@dg.asset(
    group_name="training",
    kinds={"pandas", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.features, ml.split),
    description=(
        "The feature state (JSON: clipping bounds, imputation values, category levels) fitted on the "
        "training set's train rows, and the feature table of all its rows (id, split, features, 0/1 "
        "label) that the model is trained on. Scoring applies the same state with the same code "
        "(ml/features.py). Files per run under features/<run id>/."
    ),
)
def features(
    context: dg.AssetExecutionContext, training_set: TrainingSet, params: ParamsResource, storage: ArtifactStore
) -> dg.Output[Features]:
    settings = params.load()
    rows_uri = training_set.rows_uri(storage)
    rows = ml.io.read_parquet(rows_uri)
    try:
        table, state = ml.split.training_features(rows, settings.dataset, settings.features)
    except FeatureError as error:
        raise dg.Failure(description=f"{rows_uri}: {error}") from None
    if DAY_COLUMN in rows.columns:  # which day each row came from: candidate_model trains windows of days
        table[DAY_COLUMN] = rows[DAY_COLUMN].to_numpy()
    run = context.run_id
    state_uri, table_uri = (
        layout.features(storage, run, name) for name in (layout.FEATURE_STATE, layout.FEATURE_TABLE)
    )
    # State first, table last: the table on disk is never newer than the state it was built with.
    ml.io.write_json(state.to_dict(), state_uri)
    ml.io.write_parquet(table, table_uri)
    version = file_digest(table_uri)[:16]
    labels = table.groupby(ml.split.SPLIT)["label"].mean()
    return dg.Output(
        Features(run_id=run, training_set=training_set, version=version),
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": len(table),
            "dagster/column_schema": column_schema(table),
            "feature_count": len(state.columns),
            "feature_state_fitted_rows": state.fitted_rows,
            "positive_rate_train": float(labels.get(ml.split.TRAIN, 0.0)),
            "positive_rate_holdout": float(labels.get(ml.split.HOLDOUT, 0.0)),
            "training_set_version": training_set.version,
            "table": dg.MetadataValue.path(table_uri),
            "feature_state": dg.MetadataValue.path(state_uri),
        },
    )
