"""The blocking data checks as Dagster sees them: their specs, their results, and the guard on later runs.

A checked asset declares `check_specs=data_check_specs(...)` and, having read its file once, yields
`data_check_results(...)`: one result per data check (schema, completeness, validity, uniqueness,
volume), so the UI shows which family failed, and a failed result's metadata names each failed
expectation, its column and a few offending values. Blocking: assets downstream of a failed check do
not run in that run; `require_passing_checks` refuses to build on the materialization in a later run.
"""

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from dagster._cli.utils import TMP_DAGSTER_HOME_PREFIX  # the CLI's instance without DAGSTER_HOME
from dagster._core.event_api import PartitionKeyFilter  # the filter the storage API takes; not re-exported
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord  # not re-exported

import ml.io
from data_checks.groups import CHECK_DESCRIPTIONS, CHECK_NAMES
from ml.spec import DatasetSpec, RowBounds

HISTORY_PAGE = 100


def data_check_specs(asset: str, partitions_def: dg.PartitionsDefinition | None = None) -> list[dg.AssetCheckSpec]:
    """The five blocking checks of `asset`; with `partitions_def` (the asset's), each day keeps its own result."""
    with warnings.catch_warnings():
        # Partitioned checks are "preview" in Dagster 1.13; they are what gives each day its own result.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name, asset=asset, blocking=True, description=CHECK_DESCRIPTIONS[name], partitions_def=partitions_def
            )
            for name in CHECK_NAMES
        ]


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


def _require_both_labels(frame: pd.DataFrame, spec: DatasetSpec, report) -> None:
    """A target column of one label passes every value check, yet no model can be trained on it: a label of the
    spec that no row holds (a positive label spelt otherwise in params.yaml, an export of one class) fails the
    validity check, naming the label and the values the column holds."""
    from data_checks.validation import FailedExpectation
    from ml.sources import as_text

    column, target = spec.target.column, spec.target
    if column not in frame.columns or frame.empty:
        return  # a missing column or no rows: the schema and volume checks say so
    held = sorted(as_text(frame[column]).dropna().unique().tolist())
    for field, label in (("positive", target.positive), ("negative", target.negative)):
        if label not in held:
            report.checks["validity"].failures.append(
                FailedExpectation(
                    "validity",
                    "both_labels_present",
                    column,
                    f"dataset.target.{field} {label!r} is not among column {column!r}'s values {held[:8]}; "
                    "a model needs rows of both labels",
                    [],
                )
            )


def data_check_results(
    context: dg.AssetExecutionContext,
    rows_read: pd.DataFrame | pq.ParquetFile,
    spec: DatasetSpec,
    *,
    include_target: bool,
    rows: RowBounds,
    source: str | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """Run the dataset spec's GX suite on the rows the asset just read (a frame, or a Parquet file opened
    for reading by batch, in bounded memory) and yield one result per check. `source` (the file the rows
    came from) is named when the checks cannot run."""
    # GX is imported here, not at definition load: it takes ~9 s to import.
    from data_checks.suite import build_suite
    from data_checks.validation import validate_frame, validate_parquet

    try:
        suite = build_suite(spec, include_target=include_target, rows=rows)
        validate = validate_frame if isinstance(rows_read, pd.DataFrame) else validate_parquet
        report = validate(rows_read, suite, id_column=spec.id.column)
        if include_target and isinstance(rows_read, pd.DataFrame):
            _require_both_labels(rows_read, spec, report)
    except Exception as error:  # a suite that cannot run fails every check; it never passes silently
        on = f" on {source}" if source else ""
        context.log.error(f"data checks could not run{on}: {error}")
        reason = f"{type(error).__name__}: {error}"
        for name in CHECK_NAMES:
            yield dg.AssetCheckResult(
                check_name=name,
                passed=False,
                metadata={"error": dg.MetadataValue.text(reason)},
                # The run's failure and its alert show the descriptions: without one they named no cause.
                description=f"the data checks could not run{on} ({reason})",
            )
        return
    context.log.info(report.describe())
    for name, outcome in report.checks.items():
        yield dg.AssetCheckResult(
            check_name=name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=_result_metadata(report, outcome),
            # Dagster prints a check's description with its verdict: the command line shows what failed.
            description="; ".join(f.line() for f in outcome.failures) or None,
        )


def latest_evaluation(
    instance: dg.DagsterInstance,
    key: dg.AssetCheckKey,
    matches: Callable[[AssetCheckExecutionRecord], bool],
    partition: str | None = None,
) -> dg.AssetCheckEvaluation | None:
    """The newest evaluation of check `key` (of `partition`) whose execution record `matches`.

    Not by `target_materialization_data`: Dagster fills that with the asset's latest materialization
    at the moment the check runs, which is another run's when two runs overlap.
    """
    partition_filter = PartitionKeyFilter(key=partition) if partition else None
    cursor = None
    while True:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=HISTORY_PAGE, cursor=cursor, partition_filter=partition_filter
        )
        for record in records:  # newest first; a planned check that has not run yet has no evaluation
            if isinstance(record.evaluation, dg.AssetCheckEvaluation) and matches(record):
                return record.evaluation
        if len(records) < HISTORY_PAGE:
            return None
        cursor = records[-1].id


def require_passing_checks(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    run_id: str,
    *,
    partition: str | None = None,
    check_names: Sequence[str] = CHECK_NAMES,
    what: str = "data checks",
) -> None:
    """Refuse to build on the materialization of `asset_key` that run `run_id` made unless its checks passed.

    Blocking checks stop downstream assets in the same run; this guard covers a downstream asset
    materialized on its own, in a later run, on the value it reads (its record names `run_id`).
    """
    name = asset_key.to_user_string() + (f" partition {partition}" if partition else "")
    problems, unrun = [], 0
    for check in check_names:
        # The checks run in the step that materialized the asset, on the rows it read: same run.
        evaluation = latest_evaluation(
            instance, dg.AssetCheckKey(asset_key, check), lambda record: record.run_id == run_id, partition
        )
        if evaluation is None:
            unrun += 1
            problems.append(f"{check}: not run on the materialization of run {run_id[:8]}")
        elif not evaluation.passed:
            problems.append(f"{check}: failed" + (f" ({evaluation.description})" if evaluation.description else ""))
    if not problems:
        return
    metadata = {"failed_checks": dg.MetadataValue.json(problems)}
    note = ephemeral_instance_note(instance)
    if note and unrun == len(problems):
        raise dg.Failure(description=f"{name}: no {what} of run {run_id[:8]} are known here; {note}", metadata=metadata)
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished and unrun == len(problems):
        raise dg.Failure(
            description=f"{name} is being materialized right now by run {run_id} ({run.status.value}), whose "
            f"{what} have not run yet: the same {'partition' if partition else 'asset'} was launched twice at "
            f"once. Wait for run {run_id[:8]} to finish, then re-run this one",
            metadata=metadata,
        )
    raise dg.Failure(
        description=f"{name} did not pass its {what} ({'; '.join(problems)}); "
        "fix the cause and re-materialize it with its checks",
        metadata=metadata,
    )


def ephemeral_instance_note(instance: dg.DagsterInstance) -> str | None:
    """What to do when the run's instance cannot know earlier runs: an ephemeral one, or the temporary
    one the Dagster CLI makes under the current folder when DAGSTER_HOME is unset."""
    unset = "" if os.environ.get("DAGSTER_HOME") else "DAGSTER_HOME is unset, so "
    if instance.is_ephemeral:
        kind = "an ephemeral Dagster instance"
    elif Path(instance.root_directory).name.startswith(TMP_DAGSTER_HOME_PREFIX):
        kind = f"a temporary Dagster instance ({instance.root_directory})"
    else:
        return None
    return (
        f"{unset}this run uses {kind}, which knows no earlier run: set DAGSTER_HOME to the instance's "
        "folder (the Makefile uses var/dagster) and run it again"
    )


def read_checked_file(uri: str, md5: str, what: str) -> pd.DataFrame:
    """The rows of `uri`, read once, refused (naming the file and both md5s) if it is not the version `what` checked."""
    try:
        return ml.io.read_checked_parquet(uri, md5, what)
    except ml.io.ChangedFileError as error:
        raise dg.Failure(description=str(error)) from None
