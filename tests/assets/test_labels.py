"""A labels file is checked against the ids its day was scored with; what cannot be joined is refused by name."""

import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.labels import labels
from assets.records import IncomingDay, ScoredDay
from ml import io, predictions
from orchestration.deployments import local
from resources import layout
from tests.conftest import REPO

DAY = "2026-10-01"
IDS = [f"{n:04d}-ABCD" for n in range(1, 11)]


def publish_scores(frame: pd.DataFrame, day_uri: str) -> None:
    """A scored day of one shard holding `frame`, published as ml.score's shards and the launcher leave it."""
    attempt = f"{day_uri}/run-r2"
    part = f"{attempt}/part-00000-of-00001"
    io.write_parquet(frame, f"{part}.parquet")
    io.write_parquet(frame, f"{part}.capture.parquet")
    shard = {"index": 0, "count": 1, "split": "row_groups", "start": 0, "stop": len(frame), "score_sum": 5.0}
    shard["histogram"] = {"bins": [50_000], "counts": [len(frame)]}
    report = {"rows": len(frame), "predictions_sha256": io.file_digest(f"{part}.parquet"), "seconds": 0.1}
    report |= {
        "model_manifest_sha256": "x",
        "model_version": "1",
        "id_column": "customer_id",
        "rows_uri": "in",
        "predictor": "lightgbm",
        "usage": {"cpu_seconds": 0.1, "wall_seconds": 0.1},
    }
    io.write_json({**report, "shard": shard}, f"{part}.json")
    predictions.publish(day_uri, attempt, 1, None, 0)


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder with the day scored: its incoming file, its predictions, and both records."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    storage = local(tmp_path)["storage"]
    incoming = tmp_path / "data" / "incoming" / f"{DAY}.parquet"
    io.write_parquet(pd.DataFrame({"customer_id": IDS, "tenure": range(10)}), str(incoming))
    taken_in = IncomingDay(run_id="r1", day=DAY, md5=io.file_digest(str(incoming), "md5"), rows=10)
    io.write_json(taken_in.model_dump(mode="json"), layout.record(storage, dg.AssetKey("incoming_data"), partition=DAY))
    publish_scores(pd.DataFrame({"customer_id": IDS, "score": [0.5] * 10}), layout.predictions(storage, DAY))
    scored = ScoredDay(
        run_id="r2",
        day=DAY,
        incoming=taken_in,
        model="telco_churn",
        model_version=1,
        model_manifest_sha256="x",
        rows=10,
    )
    io.write_json(
        scored.model_dump(mode="json"), layout.record(storage, dg.AssetKey("batch_predictions"), partition=DAY)
    )
    return tmp_path


def deliver(project: Path, frame: pd.DataFrame) -> str:
    path = project / "data" / "labels" / f"{DAY}.parquet"
    io.write_parquet(frame, str(path))
    return str(path)


def take_in(project: Path):
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [labels], resources=local(project), partition_key=DAY, instance=instance, raise_on_error=False
        )


def failure(result) -> str:
    error = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data.error
    return error.message.partition("Failure: ")[2].strip()  # the description the asset raised


def test_labels_of_part_of_the_day_are_taken_in_with_their_share(project):
    deliver(project, pd.DataFrame({"customer_id": IDS[:8], "churn": ["Yes", "No"] * 4}))
    result = take_in(project)
    assert result.success
    metadata = result.asset_materializations_for_node("labels")[0].metadata
    assert metadata["day_ids"].value == 10 and metadata["labelled_ids"].value == 8
    assert metadata["labelled_share"].value == pytest.approx(0.8)
    assert metadata["checked_against"].value.endswith(f"predictions/day={DAY}")
    (coverage,) = result.get_asset_check_evaluations()
    assert coverage.check_name == "label_coverage" and not coverage.passed
    assert coverage.severity == dg.AssetCheckSeverity.WARN and coverage.metadata["unlabelled_ids"].value == 2
    assert coverage.description == "8 of the day's 10 scored ids have a label (80.0%)"


def test_labels_of_the_whole_day_pass_the_coverage_check(project):
    deliver(project, pd.DataFrame({"customer_id": IDS, "churn": ["Yes", "No"] * 5}))
    result = take_in(project)
    assert result.success and result.get_asset_check_evaluations()[0].passed


def test_integer_ids_are_compared_as_text_with_the_days_ids(tmp_path):
    """A day delivered with integer ids, scored (the predictions hold them as text), labelled with integers."""
    numbers = list(range(1, 11))
    storage = local(tmp_path)["storage"]
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    publish_scores(
        pd.DataFrame({"customer_id": [str(n) for n in numbers], "score": [0.5] * 10}), layout.predictions(storage, DAY)
    )
    taken_in = IncomingDay(run_id="r1", day=DAY, md5="m", rows=10)
    scored = ScoredDay(
        run_id="r2", day=DAY, incoming=taken_in, model="m", model_version=1, model_manifest_sha256="x", rows=10
    )
    io.write_json(
        scored.model_dump(mode="json"), layout.record(storage, dg.AssetKey("batch_predictions"), partition=DAY)
    )
    deliver(tmp_path, pd.DataFrame({"customer_id": numbers[:6], "churn": ["Yes", "No"] * 3}))
    result = take_in(tmp_path)
    assert result.success
    assert result.asset_materializations_for_node("labels")[0].metadata["labelled_ids"].value == 6


def test_integer_ids_that_are_not_the_days_are_refused_as_unknown(project):
    uri = deliver(project, pd.DataFrame({"customer_id": range(1, 11), "churn": ["Yes"] * 10}))
    result = take_in(project)
    assert not result.success
    assert failure(result).startswith(f"labels {DAY}: {uri} column 'customer_id' has 10 of 10 ids that are not among")
    assert "e.g. ['1', '2', '3', '4', '5']" in failure(result)


def test_float_ids_are_refused_naming_the_file_and_column(project):
    uri = deliver(project, pd.DataFrame({"customer_id": [float(n) for n in range(1, 11)], "churn": ["Yes"] * 10}))
    result = take_in(project)
    assert not result.success
    assert failure(result).startswith(f"labels {DAY}: {uri}: id column 'customer_id' holds double values; ids must be")
    assert not result.asset_materializations_for_node("labels")


def test_a_labels_file_that_is_not_parquet_is_refused_naming_the_file(project):
    path = project / "data" / "labels" / f"{DAY}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("customer_id,churn\n0001-ABCD,Yes\n")  # a CSV under the Parquet name
    result = take_in(project)
    assert not result.success
    assert failure(result).startswith(f"labels {DAY}: {path} is not a readable Parquet file ("), failure(result)
    assert failure(result).endswith("a labels file is Parquet")


def test_unknown_ids_are_refused_with_their_count_and_examples(project):
    uri = deliver(project, pd.DataFrame({"customer_id": [*IDS[:8], "9998-XXXX", "9999-XXXX"], "churn": ["No"] * 10}))
    result = take_in(project)
    assert not result.success
    assert failure(result).startswith(
        f"labels {DAY}: {uri} column 'customer_id' has 2 of 10 ids that are not among the day's 10 ids in its "
        f"predictions"
    )
    assert "e.g. ['9998-XXXX', '9999-XXXX']; is it another day's file?" in failure(result)


def test_an_unscored_day_is_checked_against_its_incoming_file(project):
    storage = local(project)["storage"]
    Path(layout.record(storage, dg.AssetKey("batch_predictions"), partition=DAY)).unlink()
    deliver(project, pd.DataFrame({"customer_id": IDS, "churn": ["No"] * 10}))
    result = take_in(project)
    assert result.success
    checked = result.asset_materializations_for_node("labels")[0].metadata["checked_against"].value
    assert checked == str(project / "data" / "incoming" / f"{DAY}.parquet")
    Path(layout.record(storage, dg.AssetKey("incoming_data"), partition=DAY)).unlink()
    assert "labels 2026-10-01: the day has neither predictions nor a checked incoming file" in failure(take_in(project))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"customer_id": IDS[:1]}), r"labels 2026-10-01: .*\.parquet lacks columns \['churn'\]"),
        (
            pd.DataFrame({"customer_id": [IDS[0], IDS[0]], "churn": ["Yes", "No"]}),
            r"labels 2026-10-01: .*\.parquet column 'customer_id' has 1 repeated id\(s\), e\.g\. \['0001-ABCD'\]",
        ),
        (pd.DataFrame({"customer_id": IDS[:1], "churn": ["maybe"]}), r"column 'churn' has values \['maybe'\]"),
        # counted as missing, as the canary bake names them, not shown as the text 'None'
        (pd.DataFrame({"customer_id": IDS[:2], "churn": [None, None]}), r"column 'churn' has values \['2 missing'\]"),
    ],
)
def test_bad_labels_are_named(project, frame, message):
    deliver(project, frame)
    result = take_in(project)
    assert not result.success
    assert re.search(message, failure(result)), failure(result)


@pytest.mark.parametrize("id_type", [pa.string(), pa.null()])
def test_an_empty_labels_file_is_refused_naming_the_file_not_taken_in_as_the_days_labels(project, id_type):
    """0 rows with the right columns (pandas writes an empty text column with Arrow's null type) is no day's
    labels: taken in, it would replace an earlier delivery with nothing and mark the day labelled."""
    path = project / "data" / "labels" / f"{DAY}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"customer_id": pa.array([], id_type), "churn": pa.array([], pa.string())}), path)
    result = take_in(project)
    assert not result.success
    assert failure(result) == f"labels {DAY}: {path} holds no rows; an empty labels file is not taken in", failure(
        result
    )
