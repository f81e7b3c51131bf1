"""training_set: the checked raw rows plus the recent labelled days, split into train / holdout, and
the features built from them.

The recent days are what lets a retrain learn a shift: the days' snapshots joined with their labels,
each day only if its snapshot passed its data checks and both files are still the checked versions.
The feature state is fitted on the train rows only, so the holdout's statistics never reach the
imputation values, clipping bounds or category levels the model is judged with.
"""

import datetime as dt

import dagster as dg
import pandas as pd
from pydantic import Field

import ml.features
import ml.io
import ml.split
from assets.daily import incoming_uri, labels_uri, latest_materialization
from assets.incoming_data import incoming_data
from assets.labels import labels
from assets.metadata import column_schema
from assets.raw_data import dataset_spec, raw_data, raw_path
from data_checks.asset_checks import require_checked_file, require_passing_checks
from ml.fingerprint import code_version
from ml.io import file_digest
from ml.spec import DatasetSpec
from ml.split import HOLDOUT, TRAIN, SplitError, assign_split, build_training_set
from ml.training_config import TrainingConfig, TrainingConfigError
from resources.dvc import DvcResource
from resources.storage import ArtifactStore

FOLDER = "training_set"
TABLE = (FOLDER, "features.parquet")  # id, [timestamp], split, features, label
STATE = (FOLDER, "feature_state.json")
HOLDOUT_ROWS = (FOLDER, "holdout_rows.parquet")  # raw holdout rows: any model is scored on them the same way
# The newest holdout rows (the recent days' when there are any): a registered model's drift reference.
REFERENCE_ROWS = (FOLDER, "reference_rows.parquet")


class TrainingSetConfig(dg.Config):
    """Which labelled days join the raw data; by default the latest `retraining.window_days` of them."""

    recent_from: str | None = Field(default=None, description="First labelled day to add (YYYY-MM-DD).")
    recent_to: str | None = Field(default=None, description="Last labelled day to add (YYYY-MM-DD).")


def training_config(dvc: DvcResource, overrides: dict | None = None) -> TrainingConfig:
    try:
        return TrainingConfig.from_params(dvc.params().get("training"), overrides)
    except TrainingConfigError as error:
        raise dg.Failure(description=f"params.yaml: {error}") from None


def _date(value: str | None, key: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise dg.Failure(description=f"training_set config {key}: {value!r} is not a date (YYYY-MM-DD)") from None


def recent_days(context: dg.AssetExecutionContext, dvc: DvcResource, config: TrainingSetConfig) -> list[str]:
    """The labelled days in [recent_from, recent_to], at most `retraining.window_days` of the latest."""
    window = int((dvc.params().get("retraining") or {}).get("window_days", 0))
    start, end = _date(config.recent_from, "recent_from"), _date(config.recent_to, "recent_to")
    labelled = sorted(context.instance.get_materialized_partitions(labels.key))
    chosen = [d for d in labelled if (start is None or d >= start) and (end is None or d <= end)]
    return chosen[-window:] if window > 0 else []


def _checked_file(uri: str, version: str, what: str) -> pd.DataFrame:
    require_checked_file(uri, version, what)
    return ml.io.read_parquet(uri)


def labelled_rows(
    context: dg.AssetExecutionContext, dvc: DvcResource, spec: DatasetSpec, days: list[str]
) -> tuple[pd.DataFrame, list[dict]]:
    """The days' checked snapshots joined with their labels, and each day's lineage."""
    frames, lineage = [], []
    for day in days:
        snapshot_version = require_passing_checks(context, incoming_data.key, partition=day)
        labels_version = latest_materialization(context.instance, labels.key, day).asset_materialization.tags.get(
            "dagster/data_version"
        )
        snapshot = _checked_file(incoming_uri(dvc, day), snapshot_version, f"incoming_data {day}")
        outcome = _checked_file(labels_uri(dvc, day), labels_version, f"labels {day}")
        joined = snapshot.merge(outcome[[spec.id.column, spec.target.column]], on=spec.id.column, how="inner")
        frames.append(joined)
        lineage.append({"day": day, "incoming": snapshot_version, "labels": labels_version, "rows": len(joined)})
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), lineage


def lineage_tag(lineage: list[dict]) -> str:
    """One compact line per day, `day:incoming md5[:12]/labels md5[:12]`, short enough for an MLflow tag."""
    return ",".join(f"{d['day']}:{d['incoming'][:12]}/{d['labels'][:12]}" for d in lineage) or "none"


@dg.asset(
    deps=[raw_data, incoming_data, labels],
    group_name="training",
    kinds={"pandas", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.features, ml.split),
    description=(
        "The checked raw data plus the recent labelled days (snapshots joined with their labels; "
        "`retraining.window_days` of them, or the days the retraining sensor asks for), split into "
        "train and holdout rows (seeded by id, or by time when the spec has a timestamp), with the "
        "feature table (id, split, features, 0/1 label) and the feature state fitted on the train "
        "rows. Scoring applies the same state with the same code (ml/features.py)."
    ),
)
def training_set(
    context: dg.AssetExecutionContext, config: TrainingSetConfig, dvc: DvcResource, storage: ArtifactStore
) -> dg.MaterializeResult:
    checked_version = require_passing_checks(context, raw_data.key)
    raw_file = raw_path(dvc)
    require_checked_file(str(dvc.path(raw_file)), checked_version, "raw_data")
    spec, settings = dataset_spec(dvc), training_config(dvc)
    raw = dvc.read_parquet(raw_file)
    days = recent_days(context, dvc, config)
    recent, lineage = labelled_rows(context, dvc, spec, days)
    rows = pd.concat([raw, recent], ignore_index=True) if len(recent) else raw
    try:
        built = build_training_set(
            rows, spec, dvc.feature_config(), fraction=settings.holdout_fraction, seed=settings.seed
        )
        reference = (
            recent[assign_split(recent, spec, fraction=settings.holdout_fraction, seed=settings.seed) == HOLDOUT]
            if len(recent)
            else built.holdout_rows
        )
    except SplitError as error:
        raise dg.Failure(description=str(error)) from None
    table, state = built.table, built.state
    # State first, table last: the table on disk is never newer than the state it was built with.
    state_uri = storage.write_json(state.to_dict(), *STATE)
    holdout_uri = storage.write_parquet(built.holdout_rows, *HOLDOUT_ROWS)
    storage.write_parquet(reference.reset_index(drop=True), *REFERENCE_ROWS)
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
                f"latest {settings.holdout_fraction:.0%} by {spec.timestamp.column}"
                if spec.timestamp
                else f"{settings.holdout_fraction:.0%} by seeded hash of {spec.id.column} (seed {settings.seed})"
            ),
            "raw_rows": len(raw),
            "recent_rows": len(recent),
            "recent_days": dg.MetadataValue.json(lineage),
            "recent_window": f"{days[0]}..{days[-1]} ({len(days)} labelled days)" if days else "none",
            "training_partitions": lineage_tag(lineage),
            "reference_rows": len(reference),
            "feature_count": len(state.columns),
            "feature_state_fitted_rows": state.fitted_rows,
            "raw_data_version": checked_version,
            "table": dg.MetadataValue.path(table_uri),
            "feature_state": dg.MetadataValue.path(state_uri),
            "holdout_rows_table": dg.MetadataValue.path(holdout_uri),
        },
    )
