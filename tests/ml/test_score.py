"""The batch-scoring entry point: same scores as the predictor, deterministic, all-or-nothing, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml.io import file_digest, write_json
from ml.predictor import Predictor
from ml.score import ScoringError, main, score_file
from ml.train import run as train
from tests.conftest import REPO

ID = "customer_id"


@pytest.fixture(scope="module")
def model(training_inputs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("score_model") / "model"
    report = train(training_inputs["features"], training_inputs["state"], training_inputs["config"], str(out))
    return {"dir": str(out), "sha256": report["manifest_sha256"]}


@pytest.fixture(scope="module")
def rows(telco_raw, tmp_path_factory) -> str:
    """The raw Telco rows (target included: scoring ignores it) in row groups of 1,000."""
    path = tmp_path_factory.mktemp("score_rows") / "rows.parquet"
    pq.write_table(pa.Table.from_pandas(telco_raw, preserve_index=False), path, row_group_size=1000)
    return str(path)


@pytest.fixture(scope="module")
def big_rows(telco_raw, tmp_path_factory) -> str:
    """200,000 rows bootstrapped from the raw data, with new unique ids: a few seconds to score in small chunks."""
    picked = telco_raw.sample(200_000, replace=True, random_state=0).reset_index(drop=True)
    picked[ID] = [f"B{i:07d}" for i in range(len(picked))]
    path = tmp_path_factory.mktemp("score_big") / "rows.parquet"
    pq.write_table(pa.Table.from_pandas(picked, preserve_index=False), path, row_group_size=50_000)
    return str(path)


def config(model: dict, **changes) -> dict:
    return {"expected_manifest_sha256": model["sha256"], "id_column": ID, **changes}


def cli_args(model: dict, rows: str, out: Path, cfg: dict, tmp_path: Path) -> list[str]:
    write_json(cfg, str(tmp_path / "score.json"))
    return [
        "--model",
        model["dir"],
        "--rows",
        rows,
        "--config",
        str(tmp_path / "score.json"),
        "--predictions",
        str(out),
    ]


def score_cli(model: dict, rows: str, out: Path, cfg: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ml.score", *cli_args(model, rows, out, cfg, tmp_path)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.glob(f".{target.name}.tmp-*"))


@pytest.mark.parametrize("chunk_rows", [333, 1000, 2500, 100_000])
def test_output_is_the_predictors_scores_in_input_order(model, rows, tmp_path, chunk_rows):
    out = tmp_path / "predictions.parquet"
    report = score_file(model["dir"], rows, str(out), config(model, chunk_rows=chunk_rows), log=lambda _: None)
    raw = pd.read_parquet(rows)
    expected = Predictor.load(model["dir"]).predict(raw)
    written = pq.read_table(out)
    assert written.column_names == [ID, "score"] and written.schema.field("score").type == pa.float64()
    assert written.column(ID).to_pylist() == raw[ID].tolist()
    # The scorer predicts compiled (ml/compiled.py): LightGBM's scores to within float rounding.
    np.testing.assert_allclose(written.column("score").to_numpy(), expected, rtol=0, atol=1e-12)
    assert report["predictor"].startswith("lleaves 1.3.0 (compiled")
    # 7,043 rows: 333 leaves a last partial chunk of 50 rows; 333 and 1000 cut inside row groups of 1000.
    assert report["chunks"] == -(-7043 // chunk_rows) and report["rows"] == 7043
    assert report["predictions_sha256"] == file_digest(str(out))
    assert report["score_mean"] == pytest.approx(expected.mean(), abs=1e-6)
    for name, q in [("p10", 0.1), ("p50", 0.5), ("p90", 0.9)]:
        assert report["score_quantiles"][name] == pytest.approx(np.quantile(expected, q, method="lower"), abs=1e-5)
    assert leftovers(out) == []


@pytest.mark.parametrize("chunk_rows", [700, 100_000])
def test_the_capture_is_the_seeded_sample_of_the_scored_rows_whatever_the_chunk_size(
    model, rows, telco_raw, spec, tmp_path, chunk_rows
):
    """One pass scores the day and keeps the sample the drift report compares: the reference's rows rule."""
    from ml.drift import _profile_columns, reference_profile

    out, capture = tmp_path / "scores.parquet", tmp_path / "capture.parquet"
    cfg = config(model, chunk_rows=chunk_rows, capture_rows=900, capture_seed=3)
    report = score_file(model["dir"], rows, str(out), cfg, log=lambda _: None, capture=str(capture))
    assert report["capture_rows"] == 900 and report["capture_uri"] == str(capture)
    kept = pd.read_parquet(capture)
    assert list(kept.columns) == [ID, *Predictor.load(model["dir"]).state.input_columns, "score"]
    scores = pd.read_parquet(out)["score"].to_numpy()
    expected = reference_profile(telco_raw, scores, spec, max_rows=900, seed=3)
    pd.testing.assert_frame_equal(_profile_columns(kept, spec, kept["score"].to_numpy()), expected)


def test_a_rows_file_that_is_not_the_checked_version_is_refused_and_nothing_is_written(model, rows, tmp_path):
    out = tmp_path / "scores.parquet"
    checked = file_digest(rows, "md5")
    score_file(model["dir"], rows, str(out), config(model, rows_md5=checked), log=lambda _: None)  # the checked one
    good = out.read_bytes()
    with pytest.raises(ScoringError, match=rf"rows file {rows} \(md5 {checked}\) is not the version .* \({'0' * 32}\)"):
        score_file(model["dir"], rows, str(out), config(model, rows_md5="0" * 32), log=lambda _: None)
    assert out.read_bytes() == good and leftovers(out) == []


def checked_copy(rows: str, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    copy.write_bytes(Path(rows).read_bytes())
    return copy


def test_a_rows_file_renamed_over_right_after_its_hash_is_not_what_gets_scored(
    model, rows, telco_raw, tmp_path, monkeypatch
):
    """The md5 and the rows come from one open file: a new version renamed over the path after the hash is
    not read under the checked md5."""
    import ml.score

    day = checked_copy(rows, tmp_path, "day.parquet")
    checked = file_digest(str(day), "md5")
    other = telco_raw.assign(monthly_charges=999.0)
    replacement = tmp_path / "redelivered.parquet"
    pq.write_table(pa.Table.from_pandas(other, preserve_index=False), replacement)
    verify = ml.score._verify

    def verify_then_redeliver(handle, name, expected):
        verify(handle, name, expected)
        os.replace(replacement, day)  # the re-delivery lands between the hash and the read

    monkeypatch.setattr(ml.score, "_verify", verify_then_redeliver)
    out, reference = tmp_path / "scores.parquet", tmp_path / "reference.parquet"
    score_file(model["dir"], str(day), str(out), config(model, rows_md5=checked), log=lambda _: None)
    monkeypatch.undo()
    score_file(model["dir"], rows, str(reference), config(model), log=lambda _: None)
    assert pd.read_parquet(day)["monthly_charges"].eq(999.0).all()  # the path now holds the other version
    assert out.read_bytes() == reference.read_bytes()  # but the checked bytes were scored


@pytest.mark.parametrize("keeps_mtime", [False, True], ids=["cp", "cp -p"])
def test_a_rows_file_rewritten_in_place_while_scored_publishes_nothing(model, rows, tmp_path, monkeypatch, keeps_mtime):
    import ml.score

    day = checked_copy(rows, tmp_path, "day.parquet")
    out = tmp_path / "scores.parquet"
    score_file(model["dir"], str(day), str(out), config(model), log=lambda _: None)
    good = out.read_bytes()
    score_chunks = ml.score._score_chunks

    def score_then_copy_over(*args, **kwargs):
        result = score_chunks(*args, **kwargs)
        stat, same = day.stat(), day.read_bytes()
        with open(day, "r+b") as handle:  # `cp` over the file: the same inode and size, written in place
            handle.write(same)
        if keeps_mtime:  # `cp -p`: the modification time set back; only the change time moves
            os.utime(day, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return result

    monkeypatch.setattr(ml.score, "_score_chunks", score_then_copy_over)
    with pytest.raises(ScoringError, match=rf"rows file {day} was rewritten in place while it was scored"):
        score_file(
            model["dir"], str(day), str(out), config(model, rows_md5=file_digest(str(day), "md5")), log=lambda _: None
        )
    assert out.read_bytes() == good and leftovers(out) == []


@pytest.mark.parametrize("rewritten", [True, False], ids=["rewritten", "untouched"])
@pytest.mark.parametrize("link", ["added", "removed"])
def test_a_hard_link_added_or_removed_while_scored_hides_no_rewrite(
    model, rows, tmp_path, monkeypatch, link, rewritten
):
    """A link added or removed moves the change time, so that time alone cannot tell a `cp -p` in place: the bytes
    are hashed again. Before, a same-size rewrite with its modification time kept, beside a link, was published."""
    import ml.score

    day = checked_copy(rows, tmp_path, "day.parquet")
    archive = tmp_path / "archive.parquet"
    if link == "removed":
        os.link(day, archive)
    md5 = file_digest(str(day), "md5")
    out = tmp_path / "scores.parquet"
    score_chunks = ml.score._score_chunks

    def score_then_link_and_copy_over(*args, **kwargs):
        result = score_chunks(*args, **kwargs)
        stat = day.stat()
        os.link(day, archive) if link == "added" else archive.unlink()
        if rewritten:  # another version of the same size over it, in place, its modification time set back
            data = bytearray(day.read_bytes())
            data[len(data) // 2] ^= 0xFF
            with open(day, "r+b") as handle:
                handle.write(data)
            os.utime(day, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return result

    monkeypatch.setattr(ml.score, "_score_chunks", score_then_link_and_copy_over)
    run = lambda: score_file(model["dir"], str(day), str(out), config(model, rows_md5=md5), log=lambda _: None)  # noqa: E731
    if rewritten:
        with pytest.raises(ScoringError, match=rf"rows file {day} was rewritten in place while it was scored"):
            run()
        assert not out.exists() and leftovers(out) == []
    else:  # a link alone changes no byte: scored as checked
        run()
        assert out.exists()


def test_same_rows_and_model_give_a_byte_identical_file_whatever_the_chunk_size(model, rows, tmp_path):
    digests = set()
    for i, chunk_rows in enumerate([100_000, 100_000, 333]):
        out = tmp_path / f"p{i}.parquet"
        score_file(model["dir"], rows, str(out), config(model, chunk_rows=chunk_rows), log=lambda _: None)
        digests.add(file_digest(str(out)))
    assert len(digests) == 1


def test_remote_uris_read_and_write_through_fsspec(model, rows, tmp_path):
    fs = fsspec.filesystem("memory")
    for path in Path(model["dir"]).rglob("*"):
        if path.is_file():
            fs.pipe(f"/keel-test/model/{path.relative_to(model['dir'])}", path.read_bytes())
    fs.pipe("/keel-test/rows.parquet", Path(rows).read_bytes())
    report = score_file(
        "memory://keel-test/model",
        "memory://keel-test/rows.parquet",
        "memory://keel-test/out/predictions.parquet",
        config(model, chunk_rows=2000),
        log=lambda _: None,
    )
    score_file(model["dir"], rows, str(tmp_path / "local.parquet"), config(model), log=lambda _: None)
    remote_bytes = fs.cat("/keel-test/out/predictions.parquet")
    assert remote_bytes == (tmp_path / "local.parquet").read_bytes()
    assert fs.ls("/keel-test/out", detail=False) == ["/keel-test/out/predictions.parquet"]  # one object, no temp
    assert report["predictions_uri"] == "memory://keel-test/out/predictions.parquet"
    fs.rm("/keel-test", recursive=True)


def test_a_failed_run_keeps_the_previous_output_byte_for_byte(model, rows, telco_raw, tmp_path):
    out = tmp_path / "predictions.parquet"
    score_file(model["dir"], rows, str(out), config(model, chunk_rows=1000), log=lambda _: None)
    good = out.read_bytes()

    # A bad value in the 6th chunk: five chunks are already in the temporary file when it fails.
    bad = telco_raw.copy()
    bad.loc[5500, "partner"] = 7
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), tmp_path / "bad.parquet", row_group_size=1000)
    with pytest.raises(ScoringError, match=r"rows 5,000 to 5,999: boolean column 'partner' has values .*\['7'\]"):
        score_file(model["dir"], str(tmp_path / "bad.parquet"), str(out), config(model, chunk_rows=1000))
    assert out.read_bytes() == good and leftovers(out) == []

    with pytest.raises(ScoringError, match=f"does not match the registered {'0' * 64}"):
        score_file(model["dir"], rows, str(out), config(model, expected_manifest_sha256="0" * 64))
    assert out.read_bytes() == good and leftovers(out) == []


def start_and_kill(model: dict, rows: str, out: Path, tmp_path: Path) -> None:
    """Start a CLI run in 2,000-row chunks, SIGKILL it once it reports its first chunk."""
    write_json(config(model, chunk_rows=2000), str(tmp_path / "small_chunks.json"))
    command = [sys.executable, "-m", "ml.score", "--model", model["dir"], "--rows", rows]
    command += ["--config", str(tmp_path / "small_chunks.json"), "--predictions", str(out)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("scored chunk 1:"):
                break
        else:
            raise AssertionError(f"no progress line; exit code {proc.wait()}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()  # reaped: its pid no longer counts as a live writer
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished before the signal


@pytest.mark.parametrize("previous", [False, True], ids=["first_run", "over_a_good_output"])
def test_a_killed_run_leaves_no_partial_file_and_the_next_run_cleans_up(model, big_rows, tmp_path, previous):
    out = tmp_path / "predictions.parquet"
    good = None
    if previous:
        score_file(model["dir"], big_rows, str(out), config(model), log=lambda _: None)
        good = out.read_bytes()
    start_and_kill(model, big_rows, out, tmp_path)
    assert (out.read_bytes() if out.exists() else None) == good
    stale = leftovers(out)
    assert len(stale) == 1  # the killed run's temporary file

    report = score_file(model["dir"], big_rows, str(out), config(model), log=lambda _: None)
    assert report["stale_temporaries_removed"] == stale and leftovers(out) == []
    assert pq.ParquetFile(out).metadata.num_rows == report["rows"] == 200_000
    if good is not None:
        assert out.read_bytes() == good


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_column", "lacks columns ['tenure', 'customer_id'] that the model's feature state needs"),
        ("no_file", "rows file not found: {rows}"),
        ("not_parquet", "rows file {rows} is not a readable Parquet file"),
        ("empty", "rows file {rows} has no rows to score"),
        ("wrong_hash", "does not match the registered " + "a" * 64),
        ("no_model", "model {model} refused: {model}: no manifest.json"),
        ("bad_config", "unknown keys ['chunk_size'], missing keys ['id_column']"),
    ],
)
def test_bad_input_fails_with_one_line_naming_it_and_writes_nothing(model, telco_raw, tmp_path, capsys, case, message):
    rows, cfg, model_dir = str(tmp_path / "rows.parquet"), config(model), model
    frame = telco_raw
    if case == "missing_column":
        frame = telco_raw.drop(columns=["tenure", ID])
    elif case == "empty":
        frame = telco_raw.iloc[:0]
    if case == "not_parquet":
        Path(rows).write_text("customer_id,tenure\nC1,3\n")
    elif case != "no_file":
        frame.to_parquet(rows, index=False)
    if case == "wrong_hash":
        cfg = config(model, expected_manifest_sha256="a" * 64)
    elif case == "no_model":
        model_dir = {**model, "dir": str(tmp_path / "nowhere")}
    elif case == "bad_config":
        cfg = {"expected_manifest_sha256": model["sha256"], "chunk_size": 10}
    with pytest.raises(SystemExit) as exit_info:  # the CLI's main(), in-process: same code, no interpreter start-up
        main(cli_args(model_dir, rows, tmp_path / "out.parquet", cfg, tmp_path))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert exit_info.value.code == 1 and out == "" and "Traceback" not in err
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:]  # exactly one error line, the last
    assert message.format(rows=rows, model=model_dir["dir"]) in lines[-1], err
    assert not (tmp_path / "out.parquet").exists() and leftovers(tmp_path / "out.parquet") == []


def test_the_cli_prints_the_report_logs_progress_and_exits_1_on_error(model, rows, tmp_path):
    out = tmp_path / "predictions.parquet"
    proc = score_cli(model, rows, out, config(model, chunk_rows=500, model_version="7"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model_version"] == "7" and report["model_manifest_sha256"] == model["sha256"]
    assert report["predictions_sha256"] == file_digest(str(out)) and report["rows"] == 7043
    assert report["chunks"] == 15 and report["rows_per_second"] > 0
    progress = [line for line in proc.stderr.splitlines() if line.startswith("scored chunk")]
    assert [line.split(":")[0] for line in progress] == ["scored chunk 1", "scored chunk 10", "scored chunk 15"]

    # The nightly process pays no scikit-learn import (scipy.stats, ~2.5 s): LightGBM's is skipped.
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ml.score", *cli_args(model, rows, out, config(model), tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    imported = {line.split("|")[-1].strip() for line in traced.stderr.splitlines() if line.startswith("import time:")}
    assert traced.returncode == 0, traced.stderr[-2000:]
    assert "lightgbm" in imported, sorted(m for m in imported if "lightgbm" in m or "sklearn" in m)
    assert not [m for m in imported if m.startswith("sklearn.")]  # `sklearn` alone is the refused lookup

    failed = score_cli(model, rows, out, config(model, expected_manifest_sha256="b" * 64), tmp_path)
    assert failed.returncode == 1 and failed.stdout == "" and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines()[-1].startswith("error: model ") and "b" * 64 in failed.stderr
    assert file_digest(str(out)) == report["predictions_sha256"]


BLOCK_SKLEARN = """
import runpy, sys
sys.modules["sklearn"] = None  # as if scikit-learn were not installed: any import of it fails
sys.argv = ["ml.score", *sys.argv[1:]]
runpy.run_module("ml.score", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("family", ["lightgbm", "logistic_regression"])
def test_scoring_runs_without_scikit_learn(model, training_inputs, rows, tmp_path, family):
    # Scoring must not need scikit-learn: the entry point skips LightGBM's optional import of it.
    if family == "logistic_regression":
        cfg = {**training_inputs["training_config"].to_dict(), "model": family, "hyperparameters": {"max_iter": 2000}}
        write_json(cfg, str(tmp_path / "lr.json"))
        lr = train(
            training_inputs["features"], training_inputs["state"], str(tmp_path / "lr.json"), str(tmp_path / "m")
        )
        model = {"dir": str(tmp_path / "m"), "sha256": lr["manifest_sha256"]}
    write_json(config(model), str(tmp_path / "score.json"))
    out = tmp_path / "predictions.parquet"
    command = [sys.executable, "-c", BLOCK_SKLEARN, "--model", model["dir"], "--rows", rows]
    command += ["--config", str(tmp_path / "score.json"), "--predictions", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    expected = Predictor.load(model["dir"]).predict(pd.read_parquet(rows))
    np.testing.assert_allclose(pq.read_table(out).column("score").to_numpy(), expected, rtol=0, atol=1e-12)


def test_under_dagster_pipes_the_report_is_the_materialization(model, rows, tmp_path):
    write_json(config(model), str(tmp_path / "score.json"))
    out = tmp_path / "predictions.parquet"
    command = [sys.executable, "-m", "ml.score", "--model", model["dir"], "--rows", rows]
    command += ["--config", str(tmp_path / "score.json"), "--predictions", str(out)]

    @dg.asset
    def predictions(context, pipes: dg.PipesSubprocessClient):
        return pipes.run(context=context, command=command).get_materialize_result()

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [predictions], resources={"pipes": dg.PipesSubprocessClient(cwd=str(REPO))}, instance=instance
        )
    event = result.asset_materializations_for_node("predictions")[0]
    assert event.metadata["report"].value["rows"] == 7043
    assert event.tags["dagster/data_version"] == file_digest(str(out))


def money_as_decimals(frame: pd.DataFrame, columns: list[str]) -> tuple[pa.Table, pa.Table]:
    """The rows with `columns` as Parquet decimal128(10, 2), as warehouses export money, and the same rows with
    those columns as the float64 nearest each decimal (what a CSV of the same numbers reads as)."""
    from decimal import Decimal

    decimals = floats = pa.Table.from_pandas(frame, preserve_index=False)
    for column in columns:
        values = [None if pd.isna(v) else Decimal(f"{v:.2f}") for v in frame[column]]
        index = decimals.schema.get_field_index(column)
        decimals = decimals.set_column(index, column, pa.array(values, pa.decimal128(10, 2)))
        floats = floats.set_column(index, column, pa.array([None if v is None else float(v) for v in values]))
    return decimals, floats


def test_numeric_columns_exported_as_decimals_are_checked_and_scored_as_their_numbers(model, telco_raw, spec, tmp_path):
    """A day with `monthly_charges` and `total_charges` as decimal128(10, 2) was refused: "type is object,
    expected one of ['int8', ...]"; its capture kept the decimals the drift report compares with floats."""
    from data_checks.suite import build_suite
    from data_checks.validation import validate_parquet
    from ml.spec import RowBounds

    money = ["monthly_charges", "total_charges"]
    day = telco_raw.drop(columns=[spec.target.column])
    decimals, floats = money_as_decimals(day, money)
    assert decimals.schema.field("monthly_charges").type == pa.decimal128(10, 2)
    suite = build_suite(spec, include_target=False, rows=RowBounds(min=100, max=10_000))
    scored = {}
    for name, table in (("decimals", decimals), ("floats", floats)):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path, row_group_size=1000)
        with pq.ParquetFile(path) as parquet:
            report = validate_parquet(parquet, suite, id_column=ID, batch_rows=2500)
        assert [f.line() for f in report.failures] == [], name
        capture = tmp_path / f"{name}-capture.parquet"
        report = score_file(
            model["dir"],
            str(path),
            str(tmp_path / f"{name}-scores.parquet"),
            config(model),
            lambda _: None,
            str(capture),
        )
        scored[name] = (pd.read_parquet(tmp_path / f"{name}-scores.parquet"), pq.read_table(capture), report)
    (scores, capture, report), (float_scores, float_capture, float_report) = scored["decimals"], scored["floats"]
    pd.testing.assert_frame_equal(scores, float_scores)  # the same numbers, the same scores
    assert report["predictions_sha256"] == float_report["predictions_sha256"]
    assert [capture.schema.field(c).type for c in money] == [pa.float64(), pa.float64()]
    assert capture.equals(float_capture)
