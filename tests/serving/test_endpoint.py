"""The endpoint over real HTTP: scores as batch scoring computes them, checked input, health, metadata, its log."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml.predictor import Predictor
from serving.request_log import read_day


def test_scores_are_the_batch_paths_scores(server, records, tmp_path):
    rows = records[:50]
    response = server.predict(rows)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    local = server.registry.download(server.model_name, 1, tmp_path / "model")
    expected = Predictor.load(local).predict(pd.DataFrame(rows))
    assert [p["model_version"] for p in predictions] == [1] * 50
    np.testing.assert_allclose([p["score"] for p in predictions], expected, rtol=0, atol=1e-12)


def test_request_ids_from_the_row_or_the_header(server, records):
    given = server.predict([{**records[0], "request_id": "mine"}]).json()["predictions"]
    assert given[0]["request_id"] == "mine"
    header = server.predict(records[:2], headers={"X-Request-ID": "call-7"}).json()["predictions"]
    assert [p["request_id"] for p in header] == ["call-7-0", "call-7-1"]
    fresh = server.predict(records[:2]).json()["predictions"]
    assert fresh[0]["request_id"] != fresh[1]["request_id"]
    # A UTF-8 header is the text its sender meant (HTTP hands headers over as Latin-1: "Ã©" before).
    accented = server.predict(records[:1], headers={"X-Request-ID": "café-1".encode()}).json()["predictions"]
    assert accented[0]["request_id"] == "café-1"


@pytest.mark.parametrize(
    ("change", "column", "value", "words"),
    [
        ({"tenure": "twelve"}, "tenure", "twelve", "is not a number"),
        ({"tenure": 500}, "tenure", 500, "outside the spec's range"),
        ({"contract": "Weekly"}, "contract", "Weekly", "is not one of the spec's categories"),
        ({"contract": 2}, "contract", 2, "is not text"),
        ({"female": "maybe"}, "female", "maybe", "neither a true nor a false token"),
        ({"monthly_charges": None}, "monthly_charges", None, "not list it as nullable"),
        ({"shoe_size": 42}, "shoe_size", 42, "not a column of the dataset spec"),
    ],
)
def test_bad_values_are_refused_naming_column_and_value(server, records, change, column, value, words):
    rows = [records[0], {**records[1], **change}]
    response = server.predict(rows)
    assert response.status_code == 422
    body = response.json()
    assert body["problems"] == [{"row": 1, "column": column, "value": value, "message": body["problems"][0]["message"]}]
    assert words in body["error"] and f"'{column}'" in body["error"] and body["error"].startswith("row 1:")
    if value is not None:
        assert repr(value) in body["error"]


def test_a_missing_column_is_named(server, records):
    row = {k: v for k, v in records[0].items() if k != "tenure"}
    body = server.predict([row]).json()
    assert body["problems"][0]["column"] == "tenure" and "'tenure': is missing" in body["error"]


def test_a_nullable_column_may_be_null_and_the_id_may_be_absent(server, records):
    row = {k: v for k, v in records[0].items() if k != "customer_id"} | {"total_charges": None}
    response = server.predict([row])
    assert response.status_code == 200 and 0 <= response.json()["predictions"][0]["score"] <= 1


def test_a_body_that_is_not_rows_is_refused(server):
    assert httpx.post(f"{server.url}/predict", content=b"{nope", timeout=10).status_code == 422
    assert server.predict([]).status_code == 422
    assert "rows" in httpx.post(f"{server.url}/predict", json={"row": {}}, timeout=10).json()["error"]


def test_health_and_metadata(server):
    health = httpx.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["champion_version"] == 1
    metadata = server.metadata()
    expected_sha = server.registry.version_info(server.model_name, 1)["tags"]["manifest_sha256"]
    assert metadata["champion"]["version"] == 1 and metadata["champion"]["manifest_sha256"] == expected_sha
    assert metadata["mode"] == "off" and metadata["challenger"] is None
    assert metadata["traffic"] == {"champion_percent": 100.0, "canary_percent": 0.0, "shadow": False}
    assert dt.datetime.fromisoformat(metadata["since"]).tzinfo is not None


CONTRACT = {
    "request_id": pa.string(),
    "received_at": pa.timestamp("us", tz="UTC"),
    "arm": pa.string(),
    "model_version": pa.int64(),
    "manifest_sha256": pa.string(),
    "latency_ms": pa.float64(),
    "status": pa.int16(),
    "score": pa.float64(),
    "served": pa.bool_(),
}


def test_the_request_log_has_the_contracts_columns(server, records):
    ok = server.predict([{**records[3], "request_id": "logged-ok"}]).json()["predictions"][0]
    server.predict([{**records[4], "request_id": "logged-bad", "tenure": "x"}])
    day = dt.datetime.now(dt.UTC).date()
    deadline = time.monotonic() + 30
    while not {"logged-ok", "logged-bad"} <= set(read_day(server.store_root, day)["request_id"]):
        assert time.monotonic() < deadline, "the request log was not written within 30 s"
        time.sleep(0.2)
    log = read_day(server.store_root, day).set_index("request_id")
    assert log.loc["logged-ok", "score"] == ok["score"] and bool(log.loc["logged-ok", "served"])
    assert log.loc["logged-ok", "arm"] == "champion" and log.loc["logged-ok", "status"] == 200
    assert log.loc["logged-ok", "contract"] == records[3]["contract"]
    assert log.loc["logged-bad", "status"] == 422 and pd.isna(log.loc["logged-bad", "score"])
    assert not log.loc["logged-bad", "served"] and log.loc["logged-ok", "latency_ms"] > 0
    files = sorted((server.project / "var" / "storage" / "serving" / "requests" / f"day={day}").glob("*.parquet"))
    schema = pq.read_schema(files[0])
    assert {name: schema.field(name).type for name in CONTRACT} == CONTRACT
    assert schema.names[: len(CONTRACT)] == list(CONTRACT)
    assert "churn" not in schema.names and {"customer_id", "tenure", "contract", "female"} <= set(schema.names)


def test_a_row_with_a_number_for_its_request_id_is_refused_alone(server, records):
    """Its 422 is logged with its id as text, and the good rows of the same flush are all logged."""
    refused = server.predict([{**records[5], "request_id": 4242}])
    assert refused.status_code == 422 and "request_id" in refused.text
    good = [{**row, "request_id": f"beside-{i}"} for i, row in enumerate(records[100:150])]
    assert server.predict(good).status_code == 200
    day = dt.datetime.now(dt.UTC).date()
    wanted = {"4242", *(f"beside-{i}" for i in range(50))}
    deadline = time.monotonic() + 30
    while not wanted <= set(read_day(server.store_root, day)["request_id"]):
        assert time.monotonic() < deadline, "the request log did not keep every row within 30 s"
        time.sleep(0.2)
    status = server.metadata()["request_log"]
    assert status["rows_dropped"] == 0 and status["failed_flushes"] == 0
    assert status["spool"].startswith(str(server.project / "var" / "serving" / "request_log_spool"))
