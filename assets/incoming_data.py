"""incoming_data: one day's file of customer snapshots, checked by the blocking GX suite before scoring."""

import dagster as dg

import ml.io
from assets.daily import DAILY, daily_settings, incoming_uri
from assets.metadata import column_schema
from assets.raw_data import dataset_spec
from data_checks.asset_checks import gx_asset_checks
from ml.io import file_digest
from resources.dvc import DvcResource


@dg.asset(
    partitions_def=DAILY,
    group_name="scoring",
    kinds={"parquet", "great_expectations"},
    owners=["team:ml-platform"],
    description=(
        "A day's customer snapshots (params.yaml `daily.incoming`, one Parquet file per day: the "
        "spec's columns without the target). Its data version is the file's md5; the blocking data "
        "checks below run the dataset spec's GX suite on it, and a day that fails them is not scored."
    ),
)
def incoming_data(context: dg.AssetExecutionContext, dvc: DvcResource) -> dg.MaterializeResult:
    day = context.partition_key
    uri = incoming_uri(dvc, day)
    if not ml.io.exists(uri):
        raise dg.Failure(description=f"no incoming file for {day}: {uri} does not exist (has the day's file arrived?)")
    frame = ml.io.read_parquet(uri)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(file_digest(uri, "md5")),
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(frame, dataset_spec(dvc).describe),
            "path": dg.MetadataValue.path(uri),
        },
    )


def _load_day(context: dg.AssetCheckExecutionContext):
    dvc: DvcResource = context.resources.dvc
    return dataset_spec(dvc), ml.io.read_parquet(incoming_uri(dvc, context.partition_key))


incoming_data_checks = gx_asset_checks(
    asset=incoming_data,
    load_frame=_load_day,
    include_target=False,
    required_resource_keys={"dvc"},
    rows=lambda context: daily_settings(context.resources.dvc).rows,
    partitions_def=DAILY,
)
