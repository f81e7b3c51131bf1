"""training_set: the checked raw rows and/or the recent labelled days, each row marked train or holdout.

The recent days are what lets a retrain learn a shift: the days' snapshots joined with their labels,
each day only if its snapshot passed its data checks and both files are still the checked versions.
`retraining.include_raw: false` leaves the raw rows out once there are labelled days (a rolling
window). The holdout (the raw data's latest rows when the spec has a timestamp, else by a seeded hash of
the id; a recent day's rows by a hash of id and day, so every day lends rows to it) is where every model
is judged, so the `features` asset fits its state on the train rows only; the recent days' share of
it is a new version's drift reference and the rows the gate compares it with the champion on.
"""

import datetime as dt

import dagster as dg
import pandas as pd
from pydantic import Field

import ml.io
import ml.split
from assets.incoming_data import incoming_data
from assets.labels import labels
from assets.metadata import column_schema
from assets.records import DayLineage, IncomingDay, LabelledDay, RawData, TrainingSet
from data_checks.asset_checks import read_checked_file, require_passing_checks
from ml.baseline import best_single_column
from ml.fingerprint import code_version
from ml.ids import ids_as_text
from ml.io import file_digest
from ml.params import Params
from ml.split import HOLDOUT, SPLIT, TRAIN, SplitError, side, split_rows
from resources import layout
from resources.params import ParamsResource
from resources.records import read_record
from resources.storage import ArtifactStore

DAY_COLUMN = "__labelled_day__"  # which labelled day a recent row came from (dropped before writing)


class TrainingSetConfig(dg.Config):
    """Which labelled days join the raw data; by default the latest `retraining.window_days` of them."""

    recent_from: str | None = Field(default=None, description="First labelled day to add (YYYY-MM-DD).")
    recent_to: str | None = Field(default=None, description="Last labelled day to add (YYYY-MM-DD).")
    reference_from: str | None = Field(
        default=None,
        description="First day of the drift reference (YYYY-MM-DD): the retraining sensor passes the day its "
        "episode began, so the new version is judged against the data that asked for it. Default: every recent day.",
    )


def _date(value: str | None, key: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise dg.Failure(description=f"training_set config {key}: {value!r} is not a date (YYYY-MM-DD)") from None


def recent_days(labelled: list[str], config: TrainingSetConfig, window_days: int) -> list[str]:
    """Of the labelled days, those in [recent_from, recent_to]: at most the latest `window_days`."""
    start, end = _date(config.recent_from, "recent_from"), _date(config.recent_to, "recent_to")
    chosen = [d for d in sorted(labelled) if (start is None or d >= start) and (end is None or d <= end)]
    return chosen[-window_days:]


def labelled_rows(
    instance: dg.DagsterInstance, storage: ArtifactStore, settings: Params, days: list[str]
) -> tuple[pd.DataFrame, list[DayLineage]]:
    """The days' checked snapshots joined with their labels, and each day's lineage."""
    spec = settings.dataset
    frames, lineage = [], []
    for day in days:
        snapshot_of = read_record(storage, incoming_data.key, IncomingDay, partition=day)
        labels_of = read_record(storage, labels.key, LabelledDay, partition=day)
        require_passing_checks(instance, incoming_data.key, snapshot_of.run_id, partition=day)
        snapshot = read_checked_file(snapshot_of.uri(settings), snapshot_of.md5, f"incoming_data {day}")
        outcome = read_checked_file(labels_of.uri(settings), labels_of.md5, f"labels {day}")
        # Ids as text on both sides (ml/ids.py): an integer id joins its text form, and the raw ids are text.
        snapshot = ids_as_text(snapshot, spec.id.column, f"incoming_data {day}")
        outcome = ids_as_text(outcome[[spec.id.column, spec.target.column]], spec.id.column, f"labels {day}")
        joined = snapshot.merge(outcome, on=spec.id.column, how="inner")
        joined[DAY_COLUMN] = day
        frames.append(joined)
        lineage.append(DayLineage(day=day, incoming=snapshot_of.md5, labels=labels_of.md5, rows=len(joined)))
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), lineage


@dg.asset(
    deps=[incoming_data, labels],
    group_name="training",
    kinds={"pandas", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.split),
    description=(
        "The checked raw data (unless retraining.include_raw is false) plus the recent labelled days "
        "(snapshots joined with their labels; the latest `retraining.window_days` of them, or the days "
        "the retraining sensor asks for), each row marked train or holdout (the raw data's latest rows "
        "with a timestamp, else seeded by id; a recent day's rows seeded by id and day, so every day trains); plus the holdout rows every model is judged on and the recent days' share of them, a "
        "new version's drift reference and the rows the gate compares it with the champion on. Files "
        "per run under training_sets/<run id>/."
    ),
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    raw_data: RawData,
    params: ParamsResource,
    storage: ArtifactStore,
) -> dg.Output[TrainingSet]:
    require_passing_checks(context.instance, context.asset_key_for_input("raw_data"), raw_data.run_id)
    settings = params.load()
    spec, training = settings.dataset, settings.training
    raw = read_checked_file(raw_data.uri(settings), raw_data.md5, "raw_data")
    labelled = context.instance.get_materialized_partitions(labels.key)
    days = recent_days(list(labelled), config, settings.retraining.window_days)
    recent, lineage = labelled_rows(context.instance, storage, settings, days)
    include_raw = settings.retraining.include_raw or recent.empty
    fraction, seed = training.holdout_fraction, training.seed
    try:
        # A labelled day's row is split by its id and day: an id that comes back day after day (a
        # customer's daily snapshot) still lends each day's rows to both sides.
        recent_rows = (
            split_rows(
                recent,
                spec,
                fraction=fraction,
                seed=seed,
                keys=recent[spec.id.column].astype(str) + "@" + recent[DAY_COLUMN],
            )
            if len(recent)
            else None
        )
        parts = ([split_rows(raw, spec, fraction=fraction, seed=seed)] if include_raw else []) + (
            [recent_rows] if recent_rows is not None else []
        )
        rows = pd.concat(parts, ignore_index=True).drop(columns=DAY_COLUMN, errors="ignore")
        # The recent days' own holdout when there are any (from reference_from on): the data a retrained
        # model will score next, whole days of it.
        reference = side(rows, HOLDOUT)
        if recent_rows is not None:
            reference = side(recent_rows, HOLDOUT)
            start = _date(config.reference_from, "reference_from")
            if start is not None and (reference[DAY_COLUMN] >= start).any():
                reference = reference[reference[DAY_COLUMN] >= start]
            reference = reference.drop(columns=DAY_COLUMN).reset_index(drop=True)
        if rows[SPLIT].nunique() < 2:
            raise SplitError(
                f"holdout_fraction {fraction} leaves one side of the {len(rows)} rows empty; both need rows"
            )
    except SplitError as error:
        raise dg.Failure(description=str(error)) from None
    run = context.run_id
    holdout_uri, reference_uri, rows_uri = (
        layout.training_set(storage, run, name)
        for name in (layout.HOLDOUT_ROWS, layout.REFERENCE_ROWS, layout.TRAINING_ROWS)
    )
    ml.io.write_parquet(side(rows, HOLDOUT), holdout_uri)
    ml.io.write_parquet(reference, reference_uri)
    ml.io.write_parquet(rows, rows_uri)
    version = file_digest(rows_uri)[:16]
    counts = rows[ml.split.SPLIT].value_counts()
    baseline_column, baseline_auc = best_single_column(side(rows, TRAIN), side(rows, HOLDOUT), spec)
    record = TrainingSet(
        run_id=run,
        raw_data_version=raw_data.md5,
        recent_days=lineage,
        version=version,
        raw_included=include_raw,
        baseline_column=baseline_column,
        baseline_auc=baseline_auc,
    )
    return dg.Output(
        record,
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": len(rows),
            "dagster/column_schema": column_schema(rows),
            "train_rows": int(counts.get(TRAIN, 0)),
            "holdout_rows": int(counts.get(HOLDOUT, 0)),
            "holdout": ml.split.split_rule(spec, fraction=training.holdout_fraction, seed=training.seed)
            + (" (recent days: by seeded hash of id and day)" if len(recent) else ""),
            "raw_rows": len(raw) if include_raw else 0,
            "recent_rows": len(recent),
            "recent_days": dg.MetadataValue.json([d.model_dump() for d in lineage]),
            "recent_window": f"{days[0]}..{days[-1]} ({len(days)} labelled days)" if days else "none",
            "training_partitions": record.partitions,
            "reference_rows": len(reference),
            "baseline": f"best single column {baseline_column}: holdout AUC {baseline_auc:.4f}",
            "raw_data_version": raw_data.md5,
            "rows": dg.MetadataValue.path(rows_uri),
            "holdout_rows_table": dg.MetadataValue.path(holdout_uri),
        },
    )
