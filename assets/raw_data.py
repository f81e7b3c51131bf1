"""raw_data: the source file imported into the project by DVC, and its blocking data checks."""

import dagster as dg
import pandas as pd

import ml.ingest
import ml.io
import ml.sources
import ml.spec
from assets.metadata import column_schema, profile_table
from data_checks.asset_checks import gx_asset_checks
from ml.fingerprint import code_version
from resources.dvc import DvcError, DvcResource

IMPORT_STAGE = "import_raw"


def raw_path(dvc: DvcResource) -> str:
    return dvc.params()["data"]["raw"]


def dataset_spec(dvc: DvcResource) -> ml.spec.DatasetSpec:
    """The spec from params.yaml; a broken spec fails the step with the loader's message as its headline."""
    try:
        return dvc.dataset_spec()
    except ml.spec.SpecError as error:
        raise dg.Failure(description=str(error)) from None


@dg.asset(
    group_name="data",
    kinds={"dvc", "great_expectations", "parquet"},
    owners=["team:ml-platform"],
    code_version=code_version(ml.ingest, ml.io, ml.sources, ml.spec),
    description=(
        "The data set's source file, imported by the DVC stage `import_raw` (dvc.yaml) into "
        "data/raw/. Its data version is DVC's md5 of that file, so downstream assets turn stale "
        "when the data changes and every model can name the exact data it was trained on."
    ),
)
def raw_data(context: dg.AssetExecutionContext, dvc: DvcResource) -> dg.MaterializeResult:
    spec = dataset_spec(dvc)  # a broken spec fails here, before DVC runs
    path = raw_path(dvc)
    try:
        context.log.info(dvc.repro(IMPORT_STAGE))
    except DvcError as error:
        raise dg.Failure(
            description=f"importing {spec.source.uri} failed; the previous raw data is kept.\n{error}"
        ) from None
    version = dvc.output_hash(IMPORT_STAGE, path)
    frame = dvc.read_parquet(path)
    return dg.MaterializeResult(
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
            "path": dg.MetadataValue.path(str(dvc.path(path))),
        },
    )


def _load_raw(context: dg.AssetCheckExecutionContext) -> tuple[ml.spec.DatasetSpec, pd.DataFrame]:
    dvc: DvcResource = context.resources.dvc
    return dvc.dataset_spec(), dvc.read_parquet(raw_path(dvc))


raw_data_checks = gx_asset_checks(
    asset=raw_data, load_frame=_load_raw, include_target=True, required_resource_keys={"dvc"}
)
