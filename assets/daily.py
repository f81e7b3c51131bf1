"""The daily partitions and where a day's files are: params.yaml `daily:`, read once at load time.

The partitions start at `daily.start_date`; the file templates are read again at run time (through
the DVC resource), so pointing them at another folder needs no code change.
"""

from pathlib import Path

import dagster as dg
import yaml

from ml.simulate import DailyConfig, SimulationError, daily_config
from resources.dvc import DvcResource

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _start_date() -> str:
    return str(daily_config(yaml.safe_load(PARAMS.read_text(encoding="utf-8"))).start_date)


DAILY = dg.DailyPartitionsDefinition(start_date=_start_date())


def daily_settings(dvc: DvcResource) -> DailyConfig:
    try:
        return daily_config(dvc.params())
    except SimulationError as error:
        raise dg.Failure(description=str(error)) from None


def incoming_uri(dvc: DvcResource, partition: str) -> str:
    return daily_settings(dvc).incoming_uri(partition, dvc.root)


def labels_uri(dvc: DvcResource, partition: str) -> str:
    return daily_settings(dvc).labels_uri(partition, dvc.root)


def latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
) -> dg.EventLogRecord | None:
    """The latest materialization of the asset (of one partition, when given), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0] if records else None


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None) -> dict:
    """The metadata values of that materialization; {} when there is none."""
    record = latest_materialization(instance, key, partition)
    return {k: v.value for k, v in record.asset_materialization.metadata.items()} if record else {}
