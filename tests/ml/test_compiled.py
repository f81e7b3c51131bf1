"""Compiled prediction: LightGBM's scores, compiled once per model and machine, and a reported fallback."""

from __future__ import annotations

import hashlib
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import compiled
from ml.compiled import OBJECT_FILE, CompiledLightGBMModel
from ml.models import LightGBMModel
from ml.predictor import Predictor
from ml.score import score_file
from ml.train import run as train

ID = "customer_id"


@pytest.fixture(scope="module")
def model(training_inputs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("compiled_model") / "model"
    report = train(training_inputs["features"], training_inputs["state"], training_inputs["config"], str(out))
    return {"dir": str(out), "sha256": report["manifest_sha256"]}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(compiled.CACHE_ENV, str(root))
    return root


def load(model: dict) -> Predictor:
    return Predictor.load(model["dir"], model["sha256"], compiled=True)


def the_object(root: Path) -> Path:
    (entry,) = [p for p in root.iterdir() if p.is_dir()]
    return entry / OBJECT_FILE


def awkward_rows(telco_raw: pd.DataFrame) -> pd.DataFrame:
    """Real rows with missing numbers, missing categories and categories training never saw."""
    rows = telco_raw.sample(3000, random_state=1).reset_index(drop=True)
    rows.loc[::7, "total_charges"] = np.nan
    rows.loc[::5, "monthly_charges"] = np.nan  # not nullable in the spec: the feature code imputes it all the same
    rows.loc[1::4, "contract"] = "Decade-long"
    rows.loc[2::6, "payment_method"] = None
    rows.loc[3::9, "internet_service"] = "Satellite"
    return rows


def test_compiled_scores_are_lightgbms_and_a_second_load_reuses_the_cache(model, cache, telco_raw):
    first = load(model)
    assert isinstance(first.model, CompiledLightGBMModel) and first.engine == "lleaves 1.3.0 (compiled)"
    built = the_object(cache).stat().st_mtime_ns
    lightgbm = Predictor.load(model["dir"], model["sha256"])
    assert isinstance(lightgbm.model, LightGBMModel) and lightgbm.engine == "lightgbm 4.7.0"

    rows = awkward_rows(telco_raw)
    scores = first.predict(rows)
    assert np.abs(scores - lightgbm.predict(rows)).max() < 1e-12
    # Missing values the model itself routes (the feature code imputes them before a model sees them).
    matrix = np.random.default_rng(0).normal(size=(5000, len(first.model.columns))) * 50
    matrix[np.random.default_rng(1).random(matrix.shape) < 0.2] = np.nan
    assert np.abs(first.model.predict(matrix) - lightgbm.model.booster.predict(matrix)).max() < 1e-12

    second = load(model)
    assert second.engine == "lleaves 1.3.0 (compiled, cached)"
    assert the_object(cache).stat().st_mtime_ns == built  # loaded, not compiled again
    np.testing.assert_array_equal(second.predict(rows), scores)


def test_a_corrupted_or_missing_cache_entry_is_compiled_again(model, cache, telco_raw):
    expected = Predictor.load(model["dir"]).predict(telco_raw)
    load(model)
    obj = the_object(cache)
    obj.write_bytes(obj.read_bytes()[:-100] + b"\0" * 100)  # same size, different bytes
    rebuilt = load(model)
    assert rebuilt.engine == "lleaves 1.3.0 (compiled)"
    assert np.abs(rebuilt.predict(telco_raw) - expected).max() < 1e-12
    shutil.rmtree(obj.parent)
    assert load(model).engine == "lleaves 1.3.0 (compiled)" and the_object(cache).is_file()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_a_cache_entry_file_that_is_no_regular_file_is_compiled_again_not_read_without_end(model, cache, telco_raw):
    """An object swapped for a FIFO (or a link to /dev/zero) would block the load for ever (or fill the memory):
    only a regular file of bounded size is read."""
    import os

    expected = Predictor.load(model["dir"]).predict(telco_raw)
    load(model)
    obj = the_object(cache)
    obj.unlink()
    os.mkfifo(obj)
    loaded: list[Predictor] = []
    worker = threading.Thread(target=lambda: loaded.append(load(model)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert loaded, "the load did not finish: the object was read as it is (a FIFO never ends)"
    assert loaded[0].engine == "lleaves 1.3.0 (compiled)"
    assert np.abs(loaded[0].predict(telco_raw) - expected).max() < 1e-12
    assert the_object(cache).is_file() and not the_object(cache).is_symlink()


@pytest.fixture(scope="module")
def other_model(training_inputs, tmp_path_factory) -> dict:
    """Another LightGBM model on the same features: its compiled object would load in the first's place."""
    from ml.io import read_json, write_json

    config = read_json(training_inputs["config"])
    config["hyperparameters"] |= {"num_leaves": 31, "learning_rate": 0.2, "n_estimators": 60}
    folder = tmp_path_factory.mktemp("other_model")
    write_json(config, str(folder / "config.json"))
    report = train(
        training_inputs["features"], training_inputs["state"], str(folder / "config.json"), str(folder / "m")
    )
    return {"dir": str(folder / "m"), "sha256": report["manifest_sha256"]}


def test_an_object_swapped_for_another_models_is_refused_and_compiled_again(model, other_model, cache, telco_raw):
    import json
    import stat

    expected = Predictor.load(model["dir"]).predict(telco_raw)
    load(model)
    ours = the_object(cache)
    load(other_model)
    theirs = next(p / OBJECT_FILE for p in cache.iterdir() if p.is_dir() and p != ours.parent)
    assert np.abs(Predictor.load(other_model["dir"]).predict(telco_raw) - expected).max() > 0.05  # they differ

    # The swap an attacker or a bad copy makes: the other model's object, its sha256 written in the entry.
    ours.write_bytes(theirs.read_bytes())
    entry = json.loads((ours.parent / compiled.ENTRY_FILE).read_text())
    entry["object_sha256"] = hashlib.sha256(theirs.read_bytes()).hexdigest()
    (ours.parent / compiled.ENTRY_FILE).write_text(json.dumps(entry))

    rebuilt = load(model)
    assert rebuilt.engine == "lleaves 1.3.0 (compiled)"  # not "cached": the entry was refused
    assert np.abs(rebuilt.predict(telco_raw) - expected).max() < 1e-12
    assert ours.read_bytes() != theirs.read_bytes()
    assert load(model).engine == "lleaves 1.3.0 (compiled, cached)"

    key = cache / compiled.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == compiled.KEY_BYTES
    key.chmod(0o644)  # a key others may read signs nothing: a new key, and every entry compiled again
    assert load(model).engine == "lleaves 1.3.0 (compiled)"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_concurrent_loads_compile_once(model, cache):
    engines: list[str] = []
    threads = [threading.Thread(target=lambda: engines.append(load(model).engine)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(engines) == ["lleaves 1.3.0 (compiled)", "lleaves 1.3.0 (compiled, cached)"]


def test_without_lleaves_or_with_a_compile_error_scoring_falls_back_to_lightgbm_and_says_so(
    model, cache, telco_raw, tmp_path, monkeypatch
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pandas(telco_raw, preserve_index=False), rows)
    expected = Predictor.load(model["dir"]).predict(telco_raw)
    config = {"expected_manifest_sha256": model["sha256"], "id_column": ID}

    def score(**changes) -> dict:
        report = score_file(model["dir"], str(rows), str(tmp_path / "out.parquet"), {**config, **changes}, lambda _: 0)
        np.testing.assert_array_equal(pq.read_table(tmp_path / "out.parquet").column("score").to_numpy(), expected)
        return report

    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "lleaves", None)  # as if it were not installed
        report = score()
    assert report["predictor"].startswith("lightgbm 4.7.0 (compiled prediction unavailable: lleaves cannot be imp")

    def broken(model_file, folder):
        raise RuntimeError("LLVM ERROR: out of registers")

    monkeypatch.setattr(compiled, "_compile_into", broken)
    report = score()
    assert report["predictor"] == (
        "lightgbm 4.7.0 (compiled prediction unavailable: RuntimeError: LLVM ERROR: out of registers)"
    )
    entries = [p for p in cache.iterdir() if not p.name.startswith(compiled.KEY_FILE)]
    assert [p.suffix for p in entries] == [".lock"]  # no cache entry, no temporary folder
    assert score(compiled=False)["predictor"] == "lightgbm 4.7.0"


def test_an_unwritable_cache_compiles_for_the_process_only(model, tmp_path, monkeypatch, telco_raw):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(compiled.CACHE_ENV, str(blocker / "cache"))  # cannot be created
    predictor = load(model)
    assert predictor.engine == f"lleaves 1.3.0 (compiled, not cached: {blocker / 'cache'} is not writable)"
    expected = Predictor.load(model["dir"]).predict(telco_raw)
    assert np.abs(predictor.predict(telco_raw) - expected).max() < 1e-12
