"""Scoring one day on a cloud deployment: what the three backends' scoring tests share.

`cloud_day` points the project copy's `daily.incoming` / `daily.labels` at the cloud store and writes
the simulated day there, as a real upstream system would deliver it; `score_day` runs the
`nightly_scoring` job (checks, batch_predictions as a cloud job, drift_report) on the deployment's
resources; `assert_scored_like_local` checks the predictions the job delivered against the local
`Predictor` on the same rows, and the materialization's model version and manifest hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from tests.conftest import set_params

DAY = "2026-10-01"
MODEL = "telco_churn"
CHECKS = ("schema", "completeness", "validity", "uniqueness", "volume")


SHARDS = 3  # one job on three instances (replicas, nodes): each scores a third of the day


def cloud_day(project: Path, root: str) -> tuple[str, str]:
    """Set the copy's daily templates under `root` (s3://, gs://, az://) and write day 1 there; (rows, labels) URIs."""
    from ml.params import load_params
    from ml.simulate import simulate_day, write_labels, write_snapshot

    root = root.rstrip("/")
    set_params(
        project,
        daily={"incoming": f"{root}/incoming/{{date}}.parquet", "labels": f"{root}/labels/{{date}}.parquet"},
        scoring={"shards": SHARDS, "min_rows_per_shard": 1},
    )
    params = load_params(project / "params.yaml")
    daily = params.daily
    assert str(daily.date(1)) == DAY
    raw = pd.read_parquet(params.raw_uri)
    snapshot, labels = simulate_day(raw, params.dataset, params.simulation, 1)
    rows_uri = write_snapshot(snapshot, daily, 1, project)
    labels_uri = write_labels(labels, daily, 1, project)
    assert rows_uri == f"{root}/incoming/{DAY}.parquet" and labels_uri == f"{root}/labels/{DAY}.parquet"
    return rows_uri, labels_uri


def score_day(project: Path, instance: dg.DagsterInstance, resources: dict[str, Any]) -> dg.ExecuteInProcessResult:
    """The nightly_scoring job for DAY (incoming_data + checks, batch_predictions, drift_report) on `resources`."""
    from orchestration.definitions import definitions

    job = definitions(resources).resolve_job_def("nightly_scoring")
    return job.execute_in_process(instance=instance, partition_key=DAY, raise_on_error=False)


def latest(instance: dg.DagsterInstance, key: str) -> dict[str, Any]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[DAY]), limit=1
    ).records
    assert records, f"{key} {DAY} was not materialized"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def assert_scored_like_local(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance, resources: dict[str, Any], rows_uri: str
) -> dict[str, Any]:
    """Checks passed, and the delivered predictions equal the local Predictor's; returns batch_predictions' metadata."""
    from ml import io
    from ml.predictions import capture_uri, read_manifest, read_predictions
    from ml.predictor import Predictor
    from resources.registry import MANIFEST_TAG

    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {**{("incoming_data", name): True for name in CHECKS}, ("drift_report", "no_drift"): True}

    scored = latest(instance, "batch_predictions")
    registry, storage = resources["registry"], resources["storage"]
    assert scored["model_version"] == 1
    assert scored["model_manifest_sha256"] == registry.version_info(MODEL, 1)["tags"][MANIFEST_TAG]
    assert scored["rows_path"] == rows_uri
    # The predictions are the day's folder in the cloud store: 3 part files and the manifest naming them.
    assert scored["predictions"] == storage.uri("predictions", f"day={DAY}")
    assert scored["shards"] == SHARDS
    manifest = read_manifest(scored["predictions"])
    assert [p["path"].split("/")[-1] for p in manifest["parts"]] == [
        f"part-0000{i}-of-0000{SHARDS}.parquet" for i in range(SHARDS)
    ]
    assert all(p["rows"] > 0 for p in manifest["parts"]) and manifest["model_version"] == "1"
    assert manifest["split"] == scored["shard_split"] == "rows"  # the day's file is one row group: cut by rows
    predictions = read_predictions(scored["predictions"])
    rows = io.read_parquet(rows_uri)
    assert list(predictions.columns) == ["customer_id", "score"]
    assert scored["dagster/row_count"] == len(rows) == len(predictions)
    assert predictions["customer_id"].tolist() == rows["customer_id"].tolist()
    local = Predictor.load(registry.download(MODEL, 1)).predict(rows)
    assert np.abs(predictions["score"].to_numpy() - local).max() < 1e-12
    assert abs(scored["score_mean"] - float(local.mean())) < 1e-6
    # The capture the drift report reads is the shards' samples merged, named by the same manifest.
    assert scored["capture"] == capture_uri(scored["predictions"])
    assert scored["capture"].startswith(storage.uri("predictions", f"day={DAY}", "run-"))
    capture = io.read_parquet(scored["capture"])
    assert capture["customer_id"].tolist() == rows["customer_id"].tolist()  # a day under drift.current_rows: all
    assert (capture["score"].to_numpy() == predictions["score"].to_numpy()).all()
    return scored
