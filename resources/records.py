"""The IO manager: an asset's value is a small typed record (pydantic), kept as JSON in the artifact store.

Assets return records that describe what they wrote (files, versions, lineage) and take their
upstream's records as arguments, so a function's signature says what it consumes. The files
themselves stay where resources/layout.py puts them; a record is never a data frame or a pickle.

Which record an input gets:
- a daily asset: the record of that day (each materialization of a day replaces it);
- any other asset: the record of the run that materialized it, i.e. this run's when this run
  materialized the upstream asset (so two training runs at once each read their own), else the
  latest materialization's.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import dagster as dg
from dagster._core.execution.context.output import RUN_ID_PLACEHOLDER  # a cross-run input's run id
from pydantic import BaseModel, ValidationError

from ml import io
from resources import layout
from resources.storage import ArtifactStore

RecordType = TypeVar("RecordType", bound=BaseModel)


def read_record(
    storage: ArtifactStore,
    key: dg.AssetKey,
    record_type: type[RecordType],
    *,
    partition: str | None = None,
    run_id: str | None = None,
) -> RecordType:
    """The stored value of asset `key` for a day (`partition`) or for the run that made it (`run_id`)."""
    uri = layout.record(storage, key, partition=partition, run_id=run_id)
    where = key.to_user_string() + (f" {partition}" if partition else f" of run {run_id}")
    try:
        document = io.read_json(uri)
    except FileNotFoundError:
        raise dg.Failure(
            description=f"{where} has no stored value ({uri}): materialize {key.to_user_string()} first"
        ) from None
    try:
        return record_type.model_validate(document)
    except ValidationError as error:
        raise dg.Failure(
            description=f"{uri}: not a {record_type.__name__} record ({error.errors()[0]['msg']}); "
            f"materialize {key.to_user_string()} again"
        ) from None


class RecordIOManager(dg.ConfigurableIOManager):
    """Stores asset values (pydantic records) as JSON; loads them back as the input's annotated type."""

    storage: ArtifactStore

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if not isinstance(obj, BaseModel):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned a {type(obj).__name__}; assets return records "
                "(pydantic models) that describe the files they wrote"
            )
        partition = context.partition_key if context.has_partition_key else None
        uri = layout.record(self.storage, context.asset_key, partition=partition, run_id=context.run_id)
        io.write_json(obj.model_dump(mode="json"), uri)

    def load_input(self, context: dg.InputContext) -> Any:
        record_type = context.dagster_type.typing_type
        key = context.asset_key
        if not (isinstance(record_type, type) and issubclass(record_type, BaseModel)):
            raise TypeError(
                f"the input {context.name!r} ({key.to_user_string()}) must be annotated with its record type"
            )
        if context.has_asset_partitions:
            return read_record(self.storage, key, record_type, partition=context.asset_partition_key)
        return read_record(self.storage, key, record_type, run_id=self._producing_run(context))

    def _producing_run(self, context: dg.InputContext) -> str:
        upstream = context.upstream_output
        if upstream is not None and upstream.run_id != RUN_ID_PLACEHOLDER:
            return upstream.run_id  # materialized in this run (or, re-executed, in the run it came from)
        event = context.instance.get_latest_materialization_event(context.asset_key)
        if event is None:
            hint = "materialize it first"
            if not os.environ.get("DAGSTER_HOME"):  # the CLI then runs on a temporary instance: no earlier run
                hint = (
                    "DAGSTER_HOME is unset, so this run's Dagster instance knows no earlier run: set it to the "
                    "instance's folder (the Makefile uses var/dagster), or materialize it first"
                )
            raise dg.Failure(description=f"{context.asset_key.to_user_string()} has never been materialized; {hint}")
        return event.run_id
