"""Blocking Dagster asset checks that run the GX suite built from the dataset spec.

One multi-asset check per checked asset, with one result per data check (schema, completeness,
validity, uniqueness, volume), so the UI shows which family failed. A failed result's metadata
names each failed expectation, its column and a few offending values. Blocking: assets downstream
of a failed check do not run.
"""

import warnings
from collections.abc import Callable, Sequence

import dagster as dg
import pandas as pd
from dagster._core.event_api import PartitionKeyFilter  # the filter the storage API takes; not re-exported

from data_checks.groups import CHECK_DESCRIPTIONS, CHECK_NAMES
from ml.io import file_digest
from ml.spec import DatasetSpec, RowBounds

FrameLoader = Callable[[dg.AssetCheckExecutionContext], tuple[DatasetSpec, pd.DataFrame]]


def _result_metadata(report, outcome) -> dict[str, dg.MetadataValue]:
    metadata: dict[str, dg.MetadataValue] = {
        "rows": dg.MetadataValue.int(report.rows),
        "expectations": dg.MetadataValue.int(outcome.evaluated),
        "failed_expectations": dg.MetadataValue.int(len(outcome.failures)),
        "suite": dg.MetadataValue.text(report.suite),
    }
    if outcome.failures:
        metadata["failures"] = dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "expectation": f.expectation,
                        "column": f.column or "(table)",
                        "problem": f.problem,
                        "examples": ", ".join(f.examples),
                    }
                )
                for f in outcome.failures
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("expectation"),
                    dg.TableColumn("column"),
                    dg.TableColumn("problem"),
                    dg.TableColumn("examples"),
                ]
            ),
        )
        metadata["summary"] = dg.MetadataValue.md("\n".join(f"- {f.line()}" for f in outcome.failures))
    return metadata


def gx_asset_checks(
    *,
    asset: dg.AssetsDefinition | dg.AssetKey,
    load_frame: FrameLoader,
    include_target: bool,
    required_resource_keys: set[str],
    rows: RowBounds | Callable[[dg.AssetCheckExecutionContext], RowBounds] | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
) -> dg.AssetChecksDefinition:
    """Blocking data checks on `asset`; `load_frame` returns the spec and the rows to validate.

    With `partitions_def` (the asset's), each partition is checked on its own and keeps its own
    result, so one bad day fails that day only.
    """
    asset_key = asset.key if isinstance(asset, dg.AssetsDefinition) else asset
    with warnings.catch_warnings():
        # Partitioned checks are "preview" in Dagster 1.13; they are what gives each day its own result.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [
            dg.AssetCheckSpec(
                name,
                asset=asset_key,
                blocking=True,
                description=CHECK_DESCRIPTIONS[name],
                partitions_def=partitions_def,
            )
            for name in CHECK_NAMES
        ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{asset_key.to_python_identifier()}_data_checks",
        required_resource_keys=required_resource_keys,
        description="Great Expectations suite derived from the dataset spec (data_checks/suite.py).",
    )
    def _data_checks(context: dg.AssetCheckExecutionContext):
        # GX is imported here, not at definition load: it takes ~9 s to import.
        from data_checks.suite import build_suite
        from data_checks.validation import validate_frame

        try:
            spec, frame = load_frame(context)
            bounds = rows(context) if callable(rows) else rows
            report = validate_frame(
                frame, build_suite(spec, include_target=include_target, rows=bounds), id_column=spec.id.column
            )
        except Exception as error:  # an unreadable input fails every check, it never passes silently
            context.log.error(f"data checks could not run: {error}")
            for name in CHECK_NAMES:
                yield dg.AssetCheckResult(
                    check_name=name,
                    asset_key=asset_key,
                    passed=False,
                    metadata={"error": dg.MetadataValue.text(f"{type(error).__name__}: {error}")},
                )
            return
        context.log.info(report.describe())
        for name, outcome in report.checks.items():
            yield dg.AssetCheckResult(
                check_name=name,
                asset_key=asset_key,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata=_result_metadata(report, outcome),
            )

    return _data_checks


def require_passing_checks(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    check_names: Sequence[str] = CHECK_NAMES,
    what: str = "data checks",
    partition: str | None = None,
) -> str | None:
    """Refuse to build on `asset_key` unless its checks passed on its latest materialization.

    Returns the data version of that checked materialization. With `partition`, the latest
    materialization of that partition and that partition's check results.

    Blocking checks stop downstream assets in the same run; this guard also covers a downstream asset
    materialized on its own, in a later run.
    """
    instance = context.instance
    keys = [dg.AssetCheckKey(asset_key, name) for name in check_names]
    records_filter = dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition else None)
    latest = instance.fetch_materializations(records_filter, limit=1).records
    name = asset_key.to_user_string() + (f" partition {partition}" if partition else "")
    if not latest:
        raise dg.Failure(f"{name} has never been materialized; materialize it first")
    latest = latest[0]
    # The event log's check records are how the UI itself shows check status.
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        keys, partition_filter=PartitionKeyFilter(key=partition) if partition else None
    )
    problems = []
    for key in keys:
        record = records.get(key)
        evaluation = record.evaluation if record else None
        checked_latest = record is not None and (
            record.run_id == latest.run_id
            or (
                evaluation is not None
                and evaluation.target_materialization_data is not None
                and evaluation.target_materialization_data.storage_id == latest.storage_id
            )
        )
        if not checked_latest:
            problems.append(f"{key.name}: not run on the latest materialization")
        elif record.status.value != "SUCCEEDED":
            problems.append(f"{key.name}: {record.status.value.lower()}")
    if problems:
        raise dg.Failure(
            description=f"{name} did not pass its {what} ({'; '.join(problems)}); "
            "fix the cause and re-materialize it with its checks",
            metadata={"failed_checks": dg.MetadataValue.json(problems)},
        )
    return latest.event_log_entry.asset_materialization.tags.get("dagster/data_version")


def require_checked_file(uri: str, checked_version: str | None, what: str) -> None:
    """Refuse a file that changed after `what` materialized and checked it (its md5, DVC's hash of a file)."""
    on_disk = file_digest(uri, "md5")
    if on_disk != checked_version:
        raise dg.Failure(
            f"{uri} (md5 {on_disk}) is not the version {what} last materialized and checked ({checked_version}); "
            f"it changed outside Dagster. Materialize {what} with its checks first."
        )
