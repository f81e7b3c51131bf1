"""labels: the true outcomes of a day's customers, which arrive days after the day was scored.

A labels file is checked against the ids the day was scored with (its predictions file, or the
day's incoming file when it has not been scored): ids are compared as text (an integer id 7 is "7"), every
labelled id must be one of the day's (an unknown id fails the day, with the count and examples:
such a file is usually another day's or has mangled ids, and its rows would be dropped silently by
every join), ids appear once, and labels are the spec's. The share of the day's ids that have a
label is metadata and a warning check. Each message names the day, the file and the column.
"""

import warnings
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import ml.ids
import ml.io
import ml.predictions
from assets.batch_predictions import batch_predictions
from assets.incoming_data import incoming_data
from assets.partitions import DAILY
from assets.records import IncomingDay, LabelledDay, ScoredDay
from ml.params import Params
from ml.spec import DatasetSpec
from resources import layout
from resources.params import ParamsResource
from resources.records import read_record
from resources.storage import ArtifactStore

COVERAGE_CHECK = "label_coverage"
EXAMPLES = 5
ID_BATCH_ROWS = 1_000_000  # the day's ids are matched a batch at a time: memory bounded by the labels file


@dataclass(frozen=True)
class DayIds:
    """The file with the ids a day was scored with, and what it is."""

    uri: str
    what: str
    files: tuple[str, ...] = ()  # the Parquet files holding the ids (a scored day's parts); () means uri itself


@dataclass(frozen=True)
class Coverage:
    day_ids: int
    labelled: int

    @property
    def share(self) -> float:
        return self.labelled / self.day_ids if self.day_ids else 0.0


def day_ids_file(storage: ArtifactStore, settings: Params, day: str) -> DayIds:
    """The day's predictions when it was scored, else its incoming file; neither is a clear failure."""
    if ml.io.exists(layout.record(storage, batch_predictions.key, partition=day)):
        scored = read_record(storage, batch_predictions.key, ScoredDay, partition=day)
        day_uri = scored.predictions_uri(storage)
        return DayIds(day_uri, "predictions", tuple(ml.predictions.part_uris(day_uri)))
    if ml.io.exists(layout.record(storage, incoming_data.key, partition=day)):
        return DayIds(
            read_record(storage, incoming_data.key, IncomingDay, partition=day).uri(settings), "incoming file"
        )
    raise dg.Failure(
        description=f"labels {day}: the day has neither predictions nor a checked incoming file to check its "
        f"labels against; run nightly_scoring for {day} first"
    )


def _examples(values) -> list:
    return pd.unique(pd.Series(values))[:EXAMPLES].tolist()


def check_labels(table: pa.Table, spec: DatasetSpec, uri: str, day: str) -> pd.DataFrame:
    """The labels file's rows, refused (naming day, file, column) when they have no id or target,
    repeat an id, or hold labels the spec does not know."""
    column, target = spec.id.column, spec.target.column
    missing = [c for c in (column, target) if c not in table.column_names]
    if missing:
        raise dg.Failure(
            description=f"labels {day}: {uri} lacks columns {missing}; a labels file has the id and the target"
        )
    if table.num_rows == 0:
        # Taken in, it would replace an earlier delivery of the day with nothing and mark the day labelled.
        raise dg.Failure(description=f"labels {day}: {uri} holds no rows; an empty labels file is not taken in")
    frame = table.select([column, target]).to_pandas()
    duplicated = frame[column][frame[column].duplicated()]
    if not duplicated.empty:
        raise dg.Failure(
            description=f"labels {day}: {uri} column {column!r} has {len(duplicated)} repeated id(s), e.g. "
            f"{_examples(duplicated.astype(str))}; a day has one label per id"
        )
    problem = label_values_problem(frame[target], spec)
    if problem:
        raise dg.Failure(description=f"labels {day}: {uri} {problem}")
    return frame


def label_values_problem(values: pd.Series, spec: DatasetSpec) -> str | None:
    """What makes a labels file's target column no truth to judge by: labels other than the spec's two (a
    blank, 'Yes ', 'yes') or missing ones; None when every row holds one of the two. The labels job and
    the canary bake (orchestration/rollout_sensor.py) refuse a file on it alike."""
    allowed = {spec.target.positive, spec.target.negative}
    unknown = sorted({str(v) for v in values.dropna()} - allowed)
    missing = int(values.isna().sum())
    if not unknown and not missing:
        return None
    shown = unknown[:EXAMPLES] + ([f"{missing} missing"] if missing else [])
    return f"column {spec.target.column!r} has values {shown}; expected {sorted(allowed)}"


def match_day_ids(ids: pa.ChunkedArray, day: DayIds, column: str, uri: str, label: str) -> Coverage:
    """Compare the labels' ids with the day's as text (ml/ids.py), streaming the day's id column; a mismatch
    fails naming both files."""
    wanted = _as_text(ids, column, f"{label}: {uri}")
    known = np.zeros(len(wanted), dtype=bool)
    total = labelled = 0
    for path in day.files or (day.uri,):
        with ml.io.open_parquet(path) as file:
            if column not in file.schema_arrow.names:
                raise dg.Failure(description=f"{label}: the day's {day.what} {day.uri} has no column {column!r}")
            for batch in file.iter_batches(batch_size=ID_BATCH_ROWS, columns=[column]):
                scored = _as_text(batch.column(0), column, f"{label}: the day's {day.what} {day.uri}")
                total += len(scored)
                labelled += pc.sum(pc.is_in(scored, value_set=wanted)).as_py() or 0
                known |= pc.is_in(wanted, value_set=scored).to_numpy(zero_copy_only=False)
    if not known.all():
        strangers = np.asarray(wanted.to_pylist(), dtype=object)[~known]
        raise dg.Failure(
            description=f"{label}: {uri} column {column!r} has {len(strangers)} of {len(known)} ids that are not "
            f"among the day's {total} ids in its {day.what} {day.uri}, e.g. {_examples(strangers)}; is it "
            "another day's file? Correct the file (or drop those rows) and materialize the day's labels again"
        )
    return Coverage(day_ids=total, labelled=labelled)


def _as_text(ids, column: str, where: str):
    try:
        return ml.ids.arrow_ids_as_text(ids, column, where)
    except ml.ids.IdTypeError as error:
        raise dg.Failure(description=str(error)) from None


def _coverage_spec() -> dg.AssetCheckSpec:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned checks: each day keeps its own result
        return dg.AssetCheckSpec(
            COVERAGE_CHECK,
            asset="labels",
            partitions_def=DAILY,
            description="Warns when some of the day's scored ids have no label (yet): model_performance and "
            "training use the labelled ones only. Metadata: the labelled share.",
        )


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"parquet"},
    owners=["team:ml-platform"],
    check_specs=[_coverage_spec()],
    description=(
        "The true labels of a day's customers (params.yaml `daily.labels`: id and target), which "
        "arrive some days after the day was scored. The sensor `labels_arrived` materializes a day "
        "when its file appears. Checked against the ids the day was scored with (compared as text; no "
        "unknown or repeated ids); the share of the day's ids labelled is metadata. Labelled days "
        "feed model_performance and the next training set."
    ),
)
def labels(context: dg.AssetExecutionContext, params: ParamsResource, storage: ArtifactStore):
    day, settings = context.partition_key, params.load()
    spec, uri = settings.dataset, settings.labels_uri(day)
    if not ml.io.exists(uri):
        raise dg.Failure(description=f"the labels for {day} have not arrived: {uri} does not exist")
    try:
        table, md5 = ml.io.read_table_and_md5(uri)
    except ml.io.UnreadableParquetError as error:
        raise dg.Failure(description=f"labels {day}: {error}; a labels file is Parquet") from None
    frame = check_labels(table, spec, uri, day)
    day_ids = day_ids_file(storage, settings, day)
    coverage = match_day_ids(table.column(spec.id.column), day_ids, spec.id.column, uri, f"labels {day}")
    positive = frame[spec.target.column].astype(str) == spec.target.positive
    share = {
        "day_ids": coverage.day_ids,
        "labelled_ids": coverage.labelled,
        "labelled_share": dg.MetadataValue.float(coverage.share),
    }
    yield dg.Output(
        LabelledDay(run_id=context.run_id, day=day, md5=md5, rows=len(frame)),
        data_version=dg.DataVersion(md5),
        metadata={
            "dagster/row_count": len(frame),
            "positive_rate": float(positive.mean()) if len(frame) else 0.0,
            **share,
            "path": dg.MetadataValue.path(uri),
            "checked_against": dg.MetadataValue.path(day_ids.uri),
        },
    )
    yield dg.AssetCheckResult(
        check_name=COVERAGE_CHECK,
        passed=coverage.labelled == coverage.day_ids,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**share, "unlabelled_ids": coverage.day_ids - coverage.labelled},
        description=f"{coverage.labelled} of the day's {coverage.day_ids} scored ids have a label "
        f"({coverage.share:.1%})",
    )
