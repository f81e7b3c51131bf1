"""labels: the true outcomes of a day's customers, which arrive days after the day was scored."""

import dagster as dg
import pandas as pd

import ml.io
from assets.partitions import DAILY
from assets.records import LabelledDay
from ml.spec import DatasetSpec
from resources.params import ParamsResource


def check_labels(frame: pd.DataFrame, spec: DatasetSpec, uri: str) -> None:
    """Refuse a labels file that cannot be joined to its day or has labels the spec does not know."""
    missing = [c for c in (spec.id.column, spec.target.column) if c not in frame.columns]
    if missing:
        raise dg.Failure(description=f"{uri}: missing columns {missing}; a labels file has the id and the target")
    duplicated = frame[spec.id.column][frame[spec.id.column].duplicated()]
    if not duplicated.empty:
        raise dg.Failure(description=f"{uri}: ids appear twice, e.g. {list(duplicated.astype(str)[:3])}")
    allowed = {spec.target.positive, spec.target.negative}
    unknown = sorted(set(frame[spec.target.column].astype(str)) - allowed)
    if unknown:
        raise dg.Failure(
            description=f"{uri}: column {spec.target.column!r} has values {unknown[:5]}; expected {sorted(allowed)}"
        )


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"parquet"},
    owners=["team:ml-platform"],
    description=(
        "The true labels of a day's customers (params.yaml `daily.labels`: id and target), which "
        "arrive some days after the day was scored. The sensor `labels_arrived` materializes a day "
        "when its file appears. Labelled days feed model_performance and the next training set."
    ),
)
def labels(context: dg.AssetExecutionContext, params: ParamsResource) -> dg.Output[LabelledDay]:
    day, settings = context.partition_key, params.load()
    spec, uri = settings.dataset, settings.labels_uri(day)
    if not ml.io.exists(uri):
        raise dg.Failure(description=f"the labels for {day} have not arrived: {uri} does not exist")
    frame, md5 = ml.io.read_parquet_and_md5(uri)
    check_labels(frame, spec, uri)
    positive = frame[spec.target.column].astype(str) == spec.target.positive
    return dg.Output(
        LabelledDay(run_id=context.run_id, day=day, md5=md5, rows=len(frame)),
        data_version=dg.DataVersion(md5),
        metadata={
            "dagster/row_count": len(frame),
            "positive_rate": float(positive.mean()) if len(frame) else 0.0,
            "path": dg.MetadataValue.path(uri),
        },
    )
