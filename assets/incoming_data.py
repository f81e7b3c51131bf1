"""incoming_data: one day's file of customer snapshots, checked by the blocking GX suite before scoring."""

import dagster as dg

import ml.io
from assets.metadata import column_schema
from assets.partitions import DAILY
from assets.records import IncomingDay
from data_checks.asset_checks import data_check_results, data_check_specs
from resources.params import ParamsResource


@dg.asset(
    partitions_def=DAILY,
    group_name="scoring",
    kinds={"parquet", "great_expectations"},
    owners=["team:ml-platform"],
    check_specs=data_check_specs("incoming_data", DAILY),
    description=(
        "A day's customer snapshots (params.yaml `daily.incoming`, one Parquet file per day: the "
        "spec's columns without the target). Its data version is the file's md5; the blocking data "
        "checks run the dataset spec's GX suite on the same open file, a batch of rows at a time, and a "
        "day that fails them is not scored."
    ),
)
def incoming_data(context: dg.AssetExecutionContext, params: ParamsResource):
    day, settings = context.partition_key, params.load()
    uri = settings.incoming_uri(day)
    if not ml.io.exists(uri):
        raise dg.Failure(description=f"no incoming file for {day}: {uri} does not exist (has the day's file arrived?)")
    try:
        with ml.io.open_parquet_and_md5(uri) as (parquet, md5):  # one handle: the version, the rows checked
            rows = parquet.metadata.num_rows
            yield dg.Output(
                IncomingDay(run_id=context.run_id, day=day, md5=md5, rows=rows),
                data_version=dg.DataVersion(md5),
                metadata={
                    "dagster/row_count": rows,
                    "dagster/column_schema": column_schema(
                        parquet.schema_arrow.empty_table().to_pandas(), settings.dataset.describe
                    ),
                    "path": dg.MetadataValue.path(uri),
                },
            )
            # Checked a batch at a time: a day of millions of rows never sits in memory whole.
            yield from data_check_results(
                context, parquet, settings.dataset, include_target=False, rows=settings.daily.rows, source=uri
            )
    except ml.io.UnreadableParquetError as error:
        raise dg.Failure(description=f"incoming_data {day}: {error}; a day's file is Parquet") from None
