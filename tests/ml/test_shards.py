"""A day scored as N shards: the same scores and capture as one process, all-or-nothing, deterministic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml import predictions
from ml.io import write_json
from ml.score import score_file
from ml.shards import ShardError, plan, shard_index
from ml.train import run as train
from tests.conftest import REPO

ID = "customer_id"
CAPTURE_ROWS, SEED = 900, 7


@pytest.fixture(scope="module")
def model(training_inputs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("shard_model") / "model"
    report = train(training_inputs["features"], training_inputs["state"], training_inputs["config"], str(out))
    return {"dir": str(out), "sha256": report["manifest_sha256"]}


def rows_file(telco_raw: pd.DataFrame, folder: Path, row_group_size: int) -> str:
    path = folder / f"rows-{row_group_size}.parquet"
    pq.write_table(pa.Table.from_pandas(telco_raw, preserve_index=False), path, row_group_size=row_group_size)
    return str(path)


def score_config(model: dict, shards: int) -> dict:
    return {
        "expected_manifest_sha256": model["sha256"],
        "id_column": ID,
        "chunk_rows": 700,
        "capture_rows": CAPTURE_ROWS,
        "capture_seed": SEED,
        "shards": shards,
    }


def score_shards(model: dict, rows: str, day: Path, attempt: str, shards: int, tmp_path: Path, fail: int | None = None):
    """Every shard as its own `python -m ml.score --parts` process, at once; the attempt's folder."""
    config = tmp_path / f"config-{shards}.json"
    write_json(score_config(model, shards), str(config))
    folder = day / attempt
    command = [sys.executable, "-m", "ml.score", "--model", model["dir"], "--rows", rows, "--config", str(config)]
    processes = []
    for index in range(shards):
        model_arg = ["--model", "/nowhere"] if index == fail else []
        shard_command = [*command, *model_arg, "--parts", str(folder), "--shard", str(index)]
        processes.append(subprocess.Popen(shard_command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    codes = [process.wait() for process in processes]
    if fail is not None:
        assert codes[fail] != 0 and all(c == 0 for i, c in enumerate(codes) if i != fail)
    else:
        assert codes == [0] * shards, [p.stderr.read().decode()[-800:] for p in processes]
    return folder


def score_day(model: dict, rows: str, day: Path, attempt: str, shards: int, tmp_path: Path, fail: int | None = None):
    """Every shard as its own `python -m ml.score --parts` process, at once, then publish (unless one failed)."""
    folder = score_shards(model, rows, day, attempt, shards, tmp_path, fail)
    return predictions.publish(str(day), str(folder), shards, CAPTURE_ROWS, SEED)


def age(folder: Path, seconds: float) -> None:
    """Date the folder and everything in it `seconds` back."""
    then = time.time() - seconds
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (then, then))


def test_plan_cuts_at_row_group_edges_when_there_are_enough_else_by_rows(telco_raw, tmp_path):
    by_groups = plan(pq.ParquetFile(rows_file(telco_raw, tmp_path, 1000)).metadata, 3)
    assert [(s.start, s.stop, s.split) for s in by_groups] == [
        (0, 2000, "row_groups"),
        (2000, 5000, "row_groups"),
        (5000, 7043, "row_groups"),
    ]
    by_rows = plan(pq.ParquetFile(rows_file(telco_raw, tmp_path, 5000)).metadata, 3)
    assert [(s.start, s.stop, s.split) for s in by_rows] == [
        (0, 2347, "rows"),
        (2347, 4695, "rows"),
        (4695, 7043, "rows"),
    ]
    with pytest.raises(ShardError, match="fewer than the 8000 shards"):
        plan(pq.ParquetFile(rows_file(telco_raw, tmp_path, 1000)).metadata, 8000)


@pytest.mark.parametrize("row_group_size", [1000, 5000])  # split by row groups, and by rows (2 groups, 3 shards)
def test_three_shards_give_the_single_process_scores_and_capture(model, telco_raw, tmp_path, row_group_size):
    rows = rows_file(telco_raw, tmp_path, row_group_size)
    single, single_capture = tmp_path / "single.parquet", tmp_path / "single-capture.parquet"
    expected = score_file(
        model["dir"], rows, str(single), score_config(model, 1), log=lambda _: None, capture=str(single_capture)
    )
    day = tmp_path / "day=2026-10-01"
    report = score_day(model, rows, day, "run-a", 3, tmp_path)
    assert report["split"] == ("row_groups" if row_group_size == 1000 else "rows")
    scored = predictions.read_predictions(str(day))
    reference = pd.read_parquet(single)
    assert scored[ID].tolist() == reference[ID].tolist() == telco_raw[ID].tolist()
    np.testing.assert_array_equal(scored["score"].to_numpy(), reference["score"].to_numpy())
    assert pq.read_table(predictions.capture_uri(str(day))).equals(pq.read_table(single_capture))
    assert report["rows"] == expected["rows"] == 7043 and report["capture_rows"] == CAPTURE_ROWS
    assert report["score_mean"] == pytest.approx(expected["score_mean"], abs=1e-6)
    assert report["score_quantiles"] == expected["score_quantiles"]
    manifest = predictions.read_manifest(str(day))
    assert [p["path"] for p in manifest["parts"]] == [f"run-a/part-0000{i}-of-00003.parquet" for i in range(3)]
    assert manifest["model_manifest_sha256"] == model["sha256"] and sum(p["rows"] for p in manifest["parts"]) == 7043


def test_a_rerun_is_byte_identical_and_a_failed_shard_keeps_the_previous_day(model, telco_raw, tmp_path):
    rows = rows_file(telco_raw, tmp_path, 1000)
    day = tmp_path / "day=2026-10-01"
    first = score_day(model, rows, day, "run-a", 3, tmp_path)
    second = score_day(model, rows, day, "run-b", 3, tmp_path)
    for i in range(3):
        name = f"part-0000{i}-of-00003.parquet"
        assert (day / "run-a" / name).read_bytes() == (day / "run-b" / name).read_bytes()
    assert first["content_sha256"] == second["content_sha256"]
    manifest = (day / "manifest.json").read_bytes()

    with pytest.raises(predictions.PredictionsError, match="shard 1 of 3 wrote no report"):
        score_day(model, rows, day, "run-c", 3, tmp_path, fail=1)
    assert (day / "manifest.json").read_bytes() == manifest  # the previous day, files and manifest, stays
    assert predictions.part_uris(str(day))[0].endswith("run-b/part-00000-of-00003.parquet")
    assert len(predictions.read_predictions(str(day))) == 7043

    # The next good run removes all but it, the one before and any attempt written to within
    # IN_FLIGHT_SECONDS (another run of the day may still be using it): run-a is made older than that.
    age(day / "run-a", predictions.IN_FLIGHT_SECONDS + 60)
    score_day(model, rows, day, "run-d", 3, tmp_path)
    assert sorted(p.name for p in day.iterdir() if p.is_dir()) == ["run-b", "run-c", "run-d"]
    for attempt in ("run-b", "run-c"):
        age(day / attempt, predictions.IN_FLIGHT_SECONDS + 60)
    score_day(model, rows, day, "run-e", 3, tmp_path)
    assert sorted(p.name for p in day.iterdir() if p.is_dir()) == ["run-d", "run-e"]


def test_a_tampered_manifest_or_a_day_never_scored_is_refused(model, telco_raw, tmp_path):
    with pytest.raises(predictions.PredictionsError, match="manifest.json is missing"):
        predictions.read_predictions(str(tmp_path / "day=never"))
    day = tmp_path / "day=2026-10-01"
    score_day(model, rows_file(telco_raw, tmp_path, 1000), day, "run-a", 2, tmp_path)
    document = json.loads((day / "manifest.json").read_text())
    document["rows"] += 1
    (day / "manifest.json").write_text(json.dumps(document))
    with pytest.raises(predictions.PredictionsError, match="sha256 does not match"):
        predictions.read_predictions(str(day))


def test_the_shard_index_comes_from_the_argument_the_launcher_or_the_platform(tmp_path):
    assert shard_index(3, 2, environ={}) == 2
    assert shard_index(3, environ={"KEEL_SHARD_INDEX": "1"}) == 1
    assert shard_index(1, environ={}) == 0
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    hosts = [f"algo-{i}" for i in range(1, 12)]
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-10", "hosts": hosts}))
    assert shard_index(11, environ={"KEEL_SAGEMAKER_ROOT": str(tmp_path)}) == 9
    spec = {"cluster": {}, "task": {"type": "workerpool1", "index": 1}}
    assert shard_index(3, environ={"CLUSTER_SPEC": json.dumps(spec)}) == 2
    assert shard_index(3, environ={"NODE_RANK": "0"}) == 0
    with pytest.raises(ShardError, match="pass --shard or set KEEL_SHARD_INDEX"):
        shard_index(3, environ={})
    with pytest.raises(ShardError, match=r"shard 3 \(from NODE_RANK\) is not one of 0..2"):
        shard_index(3, environ={"NODE_RANK": "3"})


def test_a_run_whose_attempt_another_run_removed_says_so_and_leaves_that_runs_day(model, telco_raw, tmp_path):
    rows = rows_file(telco_raw, tmp_path, 1000)
    day = tmp_path / "day=2026-10-01"
    score_day(model, rows, day, "run-a", 2, tmp_path)
    score_day(model, rows, day, "run-b", 2, tmp_path)
    manifest = (day / "manifest.json").read_bytes()
    # run-c's folder, removed by a publish of run-d while run-c still scored
    with pytest.raises(predictions.PredictionsError, match="attempt folder .*run-c is gone: another run"):
        predictions.publish(str(day), str(day / "run-c"), 2, CAPTURE_ROWS, SEED)
    assert (day / "manifest.json").read_bytes() == manifest
    assert len(predictions.read_predictions(str(day))) == 7043


def named_files(day: Path) -> list[Path]:
    manifest = predictions.read_manifest(str(day))
    return [day / entry["path"] for entry in [*manifest["parts"], manifest["capture"]]]


def publish_with_another_run_in_between(monkeypatch, day: Path, ours: Path, theirs: Path, between=None) -> None:
    """Publish `ours`; after its shard reports were checked and before its manifest is written, `theirs`
    publishes in full (and `between` runs), as a second run of the same day would."""
    merge = predictions.merge_captures

    def merge_then_the_other_run_publishes(*args, **kwargs):
        monkeypatch.setattr(predictions, "merge_captures", merge)
        predictions.publish(str(day), str(theirs), 2, CAPTURE_ROWS, SEED)
        if between is not None:
            between()
        return merge(*args, **kwargs)

    monkeypatch.setattr(predictions, "merge_captures", merge_then_the_other_run_publishes)
    predictions.publish(str(day), str(ours), 2, CAPTURE_ROWS, SEED)


def test_a_run_that_publishes_between_another_runs_checks_and_its_manifest_removes_none_of_its_files(
    model, telco_raw, tmp_path, monkeypatch
):
    rows = rows_file(telco_raw, tmp_path, 1000)
    day = tmp_path / "day=2026-10-01"
    score_day(model, rows, day, "run-a", 2, tmp_path)  # the day as published before
    run_b = score_shards(model, rows, day, "run-b", 2, tmp_path)
    run_c = score_shards(model, rows, day, "run-c", 2, tmp_path)
    publish_with_another_run_in_between(monkeypatch, day, ours=run_c, theirs=run_b)
    manifest = predictions.read_manifest(str(day))
    assert {entry["path"].split("/")[0] for entry in manifest["parts"]} == {"run-c"}
    missing = [str(path) for path in named_files(day) if not path.exists()]
    assert missing == []  # before: run-b's publish removed run-c's parts, which its manifest then named
    assert len(predictions.read_predictions(str(day))) == 7043
    assert sorted(p.name for p in day.iterdir() if p.is_dir()) == ["run-a", "run-b", "run-c"]


def test_a_manifest_naming_files_removed_meanwhile_is_taken_back_and_the_run_fails_naming_the_day(
    model, telco_raw, tmp_path, monkeypatch
):
    rows = rows_file(telco_raw, tmp_path, 1000)
    day = tmp_path / "day=2026-10-01"
    score_day(model, rows, day, "run-a", 2, tmp_path)
    run_b = score_shards(model, rows, day, "run-b", 2, tmp_path)
    run_c = score_shards(model, rows, day, "run-c", 2, tmp_path)
    published = {}

    def run_b_published():  # and then run-c's parts went (a store whose clock is a day ahead, an older Keel)
        published["manifest"] = (day / "manifest.json").read_bytes()
        for part in run_c.glob("part-*"):
            part.unlink()

    with pytest.raises(predictions.PredictionsError, match=r"day=2026-10-01 is not published by this run: .*removed"):
        publish_with_another_run_in_between(monkeypatch, day, ours=run_c, theirs=run_b, between=run_b_published)
    assert (day / "manifest.json").read_bytes() == published["manifest"]  # run-b's day, put back
    assert all(path.exists() for path in named_files(day))
    assert len(predictions.read_predictions(str(day))) == 7043


def test_on_an_object_store_only_attempts_no_one_wrote_to_for_a_day_are_removed():
    import fsspec

    fs = fsspec.filesystem("memory")
    day = "memory://keel-j6/predictions/day=2026-10-01"
    for attempt in ("run-old", "run-young", "run-kept"):
        with fs.open(f"{day}/{attempt}/part-00000-of-00001.parquet", "wb") as handle:
            handle.write(b"x")
    then = datetime.now(UTC) - timedelta(seconds=predictions.IN_FLIGHT_SECONDS + 60)
    for attempt in ("run-old", "run-kept"):
        fs.store[f"/keel-j6/predictions/day=2026-10-01/{attempt}/part-00000-of-00001.parquet"].modified = then
    try:
        predictions._remove_attempts(day, keep={"run-kept", None})
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(day, detail=False)) == ["run-kept", "run-young"]
    finally:
        fs.rm("/keel-j6", recursive=True)
