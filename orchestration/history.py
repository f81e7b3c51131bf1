"""What the instance remembers about an asset, for sensors, the demo and tests (not for assets: they
take their upstream's records as arguments)."""

import dagster as dg


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
