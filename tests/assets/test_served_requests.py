"""served_requests turns a day of the request log into files the monitoring code reads as it reads batch scores."""

import datetime as dt

import dagster as dg
import numpy as np
import pytest

import ml.drift
import ml.io
from assets.served_requests import served_requests
from resources import layout
from resources.params import ParamsResource
from resources.storage import ArtifactStore
from serving.request_log import RequestLog, input_columns
from tests.conftest import REPO

DAY = "2026-10-05"


def test_a_logged_day_becomes_predictions_and_a_capture(tmp_path, spec, telco_raw):
    storage = ArtifactStore(root=str(tmp_path / "storage"))
    rows = telco_raw.head(300)
    at = dt.datetime.fromisoformat(f"{DAY}T10:00:00+00:00")
    log = RequestLog(storage.root, spec, flush_seconds=3600)
    entries = []
    for i, record in enumerate(rows[input_columns(spec)].to_dict("records")):
        arm = "canary" if i % 5 == 0 else "champion"
        status = 500 if i % 50 == 1 else 200
        base = {"received_at": at, "latency_ms": 3.0, "status": status, "score": None if status != 200 else i / 300}
        entries.append({**base, "request_id": f"r{i}", "arm": arm, "model_version": 2 if arm == "canary" else 1})
        entries[-1].update(served=True, manifest_sha256="x", **record)
        # the same request scored by a shadow: logged, never answered
        entries.append({**entries[-1], "arm": "shadow", "model_version": 3, "served": False, "score": 5.0})
    log.append(entries)
    log.close()

    params = ParamsResource(project_dir=str(REPO))
    result = dg.materialize([served_requests], partition_key=DAY, resources={"params": params, "storage": storage})
    assert result.success
    predictions = ml.io.read_parquet(layout.served_predictions(storage, DAY))
    answered = [i for i in range(300) if i % 50 != 1]
    assert sorted(predictions[spec.id.column]) == sorted(rows[spec.id.column].iloc[answered])
    assert set(predictions["model_version"]) == {1, 2} and predictions["score"].max() < 1  # no shadow score
    capture = ml.drift.load_capture(layout.served_capture(storage, DAY), spec)
    champion = [i for i in answered if i % 5 != 0]
    assert len(capture) == len(champion)
    np.testing.assert_allclose(capture[ml.drift.PREDICTION], [i / 300 for i in champion])
    metadata = result.asset_materializations_for_node("served_requests")[0].metadata
    assert metadata["per_arm"].value["champion"] == {"requests": 240, "errors": 6}


def test_a_day_without_requests_fails_clearly(tmp_path):
    storage = ArtifactStore(root=str(tmp_path / "storage"))
    params = ParamsResource(project_dir=str(REPO))
    with pytest.raises(dg.Failure, match=f"no request was logged on {DAY}"):
        dg.materialize([served_requests], partition_key=DAY, resources={"params": params, "storage": storage})
