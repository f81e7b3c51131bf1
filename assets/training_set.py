"""training_set: the checked raw rows and the recent labelled days, each row marked train or holdout.

The recent days are what lets a retrain learn a shift: the days' snapshots joined with their labels,
each day only if its snapshot passed its data checks and both files are still the checked versions.
With labelled days, the holdout is the newest whole days (`gate.min_rows` rows at least, ml/windows.py):
every candidate is judged on them and none trains on them, the gate compares the winner with the
champion on them, and they are the new version's drift reference. The days before them feed the
windows of `retraining.windows` (each a candidate: its latest days, with or without the raw rows);
when the spec has a timestamp, the raw data's days before the first labelled day are days of the
windows too, and their raw rows carry their date (ml/windows.py raw_days). The since_episode window
is a candidate only when a collapse asked for the retrain (`relation_changed`). With `requested_on`
(the night the retrain was asked on), the windows without their newest days up to the night the new
version first scores (ml/windows.py choice_gap) are recorded too: candidate_model lets their models
choose the window. Without labelled days (the first model), the holdout is the raw data's latest rows when the spec has a
timestamp, else a seeded hash of the id. The
`features` asset fits its state on the train rows only.
"""

import datetime as dt
from collections.abc import Sequence

import dagster as dg
import pandas as pd
from pydantic import Field

import ml.io
import ml.split
import ml.windows
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
from ml.windows import WindowDays, candidate_windows
from resources import layout
from resources.params import ParamsResource
from resources.records import read_record
from resources.storage import ArtifactStore

DAY_COLUMN = "__labelled_day__"  # which labelled day a row came from (kept: a window is a set of days)
RAW_DAY = "raw"  # the day of the raw rows (those of the raw data's days, `raw_days`: their date)


class TrainingSetConfig(dg.Config):
    """Which labelled days are loaded; by default the latest `retraining.window_days` of them."""

    recent_from: str | None = Field(default=None, description="First labelled day to add (YYYY-MM-DD).")
    recent_to: str | None = Field(default=None, description="Last labelled day to add (YYYY-MM-DD).")
    reference_from: str | None = Field(
        default=None,
        description="The day the episode that asked for this retrain began (YYYY-MM-DD), recorded with the "
        "training set; the drift reference is the evaluation days, the newest whole labelled days.",
    )
    requested_on: str | None = Field(
        default=None,
        description="The night the retrain was asked on (YYYY-MM-DD); the new version scores from the next "
        "night on, so the window is chosen by models trained without the days from the newest labelled day "
        "to that night (ml/windows.py choice_gap). None (a retrain by hand): the windows' own models choose.",
    )
    relation_changed: bool = Field(
        default=False,
        description="A collapse asked for the retrain (the relation between the columns and the target "
        "changed): the since_episode windows are candidates, and the window is chosen without a gap.",
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


def window_mask(day: pd.Series, window: WindowDays, raw_days: Sequence[str]) -> pd.Series:
    """Which rows (by their day, DAY_COLUMN) a window trains on: its days, and with `raw` every raw row."""
    raw = (day == RAW_DAY) | day.isin(raw_days)
    return day.isin(window.days) | (raw & window.raw)


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
    code_version=code_version(ml.split, ml.windows),
    description=(
        "The checked raw data plus the recent labelled days (snapshots joined with their labels; the latest "
        "`retraining.window_days` of them, or the days the retraining sensor asks for). With labelled days, "
        "the holdout is the newest whole days (at least gate.min_rows rows), on which every candidate is "
        "judged and none is trained, the gate compares it with the champion, and the new version's drift "
        "reference; the days before them feed the windows of retraining.windows, one candidate each (with a "
        "timestamp, the raw data's days before the first labelled day count as days of the windows; the "
        "since_episode window only after a collapse), and the same windows without their newest days up to "
        "the night the new version first scores, whose models choose the window. "
        "Without, the raw data's latest rows (with a timestamp) or a seeded hash of the id hold rows out. Files per run under training_sets/<run id>/."
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
    fraction, seed = training.holdout_fraction, training.seed
    rows_per_day = {d.day: d.rows for d in lineage if d.rows}
    episode_start = _date(config.reference_from, "reference_from")
    evaluation = ml.windows.evaluation_days(rows_per_day, settings.gate.min_rows, episode_start)
    before = [d for d in sorted(rows_per_day) if d not in evaluation]
    configured, changed = settings.retraining.windows, config.relation_changed
    raw_dates = ml.windows.row_dates(raw, spec) if evaluation else None
    dated = ml.windows.raw_days(raw_dates, list(labelled), days) if raw_dates is not None else []
    windows = candidate_windows(configured, before, episode_start, dated, changed) if evaluation else []
    gap = ml.windows.choice_gap(days[-1] if days else None, _date(config.requested_on, "requested_on"), changed)
    lagged = ml.windows.lagged_windows(configured, windows, before, gap, episode_start, dated) if windows else []
    # The raw days some window trains on (their raw rows); every raw row when a window takes the raw data.
    used = sorted({d for w in windows + lagged for d in w.days} & set(dated))
    include_raw = not windows or any(w.raw for w in windows)
    raw_count = 0
    try:
        parts = []
        if include_raw or used:
            day_of = RAW_DAY if raw_dates is None else raw_dates.where(raw_dates.isin(dated), RAW_DAY)
            raw_rows = raw.assign(**{DAY_COLUMN: day_of})
            if not include_raw:  # only the raw days' rows some window trains on
                raw_rows = raw_rows[raw_rows[DAY_COLUMN].isin(used)]
            raw_count = len(raw_rows)
            parts.append(
                raw_rows.assign(**{SPLIT: TRAIN})
                if evaluation
                else split_rows(raw_rows, spec, fraction=fraction, seed=seed)
            )
        if len(recent):
            if evaluation:
                # Whole newest days held out: the next nights are whole days, and after a change the
                # newest days are the ones that show it.
                parts.append(
                    recent.assign(**{SPLIT: recent[DAY_COLUMN].isin(evaluation).map({True: HOLDOUT, False: TRAIN})})
                )
            else:
                # A labelled day's row is split by its id and day: an id that comes back day after day (a
                # customer's daily snapshot) still lends each day's rows to both sides.
                keys = recent[spec.id.column].astype(str) + "@" + recent[DAY_COLUMN]
                parts.append(split_rows(recent, spec, fraction=fraction, seed=seed, keys=keys))
        rows = pd.concat(parts, ignore_index=True)
        if rows[SPLIT].nunique() < 2:
            raise SplitError(
                f"holdout_fraction {fraction} leaves one side of the {len(rows)} rows empty; both need rows"
            )
    except SplitError as error:
        raise dg.Failure(description=str(error)) from None
    holdout = side(rows, HOLDOUT).drop(columns=DAY_COLUMN)
    # The drift reference: the evaluation days (whole, newest, never trained on); without them the
    # recent days' share of the holdout, else the whole holdout.
    recent_holdout = side(rows[rows[DAY_COLUMN] != RAW_DAY], HOLDOUT).drop(columns=DAY_COLUMN)
    reference = recent_holdout if len(recent_holdout) else holdout
    run = context.run_id
    holdout_uri, reference_uri, rows_uri = (
        layout.training_set(storage, run, name)
        for name in (layout.HOLDOUT_ROWS, layout.REFERENCE_ROWS, layout.TRAINING_ROWS)
    )
    ml.io.write_parquet(holdout, holdout_uri)
    ml.io.write_parquet(reference, reference_uri)
    ml.io.write_parquet(rows, rows_uri)
    version = file_digest(rows_uri)[:16]
    counts = rows[ml.split.SPLIT].value_counts()
    train_rows = side(rows, TRAIN).drop(columns=DAY_COLUMN)
    baseline_column, baseline_auc = best_single_column(train_rows, holdout, spec)
    record = TrainingSet(
        run_id=run,
        raw_data_version=raw_data.md5,
        recent_days=lineage,
        version=version,
        raw_included=include_raw,
        baseline_column=baseline_column,
        baseline_auc=baseline_auc,
        evaluation_days=evaluation,
        windows=windows,
        raw_days=dated if include_raw else used,
        lagged_windows=lagged,
        choice_gap=gap if lagged else 0,
    )
    if evaluation:
        held_out = (
            f"the newest whole labelled days {evaluation[0]}..{evaluation[-1]} (gate.min_rows {settings.gate.min_rows})"
        )
    else:
        held_out = ml.split.split_rule(spec, fraction=training.holdout_fraction, seed=training.seed) + (
            " (recent days: by seeded hash of id and day)" if len(recent) else ""
        )
    return dg.Output(
        record,
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": len(rows),
            "dagster/column_schema": column_schema(rows),
            "train_rows": int(counts.get(TRAIN, 0)),
            "holdout_rows": int(counts.get(HOLDOUT, 0)),
            "holdout": held_out,
            "windows": dg.MetadataValue.json({w.name: w.describe() for w in windows}),
            "raw_rows": raw_count,
            "raw_days": f"{dated[0]}..{dated[-1]} ({len(dated)} days of the windows)" if dated else "none",
            "choice": (
                f"by the windows without their newest {gap} days: "
                + ", ".join(f"{w.name} {w.describe()}" for w in lagged)
                if lagged
                else "by the windows' own models"
            ),
            "recent_rows": len(recent),
            "recent_days": dg.MetadataValue.json([d.model_dump() for d in lineage]),
            "recent_window": f"{days[0]}..{days[-1]} ({len(days)} labelled days)" if days else "none",
            "training_partitions": record.partitions,
            "reference_rows": len(reference),
            "episode_from": config.reference_from or "none",
            "baseline": f"best single column {baseline_column}: holdout AUC {baseline_auc:.4f}",
            "raw_data_version": raw_data.md5,
            "rows": dg.MetadataValue.path(rows_uri),
            "holdout_rows_table": dg.MetadataValue.path(holdout_uri),
        },
    )
