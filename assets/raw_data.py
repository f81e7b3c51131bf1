"""raw_data: the source file imported into the project by DVC, and its blocking data checks."""

import dagster as dg

import ml.ingest
import ml.io
import ml.sources
import ml.spec
from assets.metadata import column_schema, profile_table
from assets.records import RawData
from data_checks.asset_checks import data_check_results, data_check_specs, read_checked_file
from ml.fingerprint import code_version
from resources.dvc import DvcError, DvcResource
from resources.params import ParamsResource

IMPORT_STAGE = "import_raw"


@dg.asset(
    group_name="data",
    kinds={"dvc", "great_expectations", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.ingest, ml.io, ml.sources, ml.spec),
    check_specs=data_check_specs("raw_data"),
    description=(
        "The data set's source file, imported by the DVC stage `import_raw` (dvc.yaml) into "
        "data/raw/. Its data version is DVC's md5 of that file, so downstream assets turn stale "
        "when the data changes and every model can name the exact data it was trained on. The "
        "blocking checks run the dataset spec's GX suite on the rows the import wrote."
    ),
)
def raw_data(context: dg.AssetExecutionContext, params: ParamsResource, dvc: DvcResource):
    settings = params.load()  # a broken spec fails here, before DVC runs
    spec = settings.dataset
    try:
        context.log.info(dvc.repro(IMPORT_STAGE))
    except DvcError as error:
        raise dg.Failure(
            description=f"importing {spec.source.uri} failed; the previous raw data is kept.\n{error}"
        ) from None
    version = dvc.output_hash(IMPORT_STAGE, settings.data.raw)
    frame = read_checked_file(settings.raw_uri, version, f"the DVC stage {IMPORT_STAGE}")
    yield dg.Output(
        RawData(run_id=context.run_id, md5=version, rows=len(frame)),
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(frame, spec.describe),
            "columns": frame.shape[1],
            "profile": profile_table(frame),
            "dvc_md5": version,
            "dvc_stage": IMPORT_STAGE,
            "git_revision": dvc.git_revision(),
            "source": spec.source.uri,
            "dataset": spec.name,
            "path": dg.MetadataValue.path(settings.raw_uri),
        },
    )
    yield from data_check_results(context, frame, spec, include_target=True, rows=spec.rows, source=settings.raw_uri)
