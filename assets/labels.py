"""labels: the true outcomes of a day's customers, which arrive days after the day was scored."""

import dagster as dg
import pandas as pd

import ml.io
from assets.daily import DAILY, labels_uri
from assets.raw_data import dataset_spec
from ml.io import file_digest
from ml.spec import DatasetSpec
from resources.dvc import DvcResource


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
def labels(context: dg.AssetExecutionContext, dvc: DvcResource) -> dg.MaterializeResult:
    day, spec = context.partition_key, dataset_spec(dvc)
    uri = labels_uri(dvc, day)
    if not ml.io.exists(uri):
        raise dg.Failure(description=f"the labels for {day} have not arrived: {uri} does not exist")
    frame = ml.io.read_parquet(uri)
    check_labels(frame, spec, uri)
    positive = frame[spec.target.column].astype(str) == spec.target.positive
    return dg.MaterializeResult(
        data_version=dg.DataVersion(file_digest(uri, "md5")),
        metadata={
            "dagster/row_count": len(frame),
            "positive_rate": float(positive.mean()) if len(frame) else 0.0,
            "path": dg.MetadataValue.path(uri),
        },
    )
