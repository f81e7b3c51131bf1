"""The training entry point run by hand: artifact contents, metrics, reproducibility and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.artifact import verify_artifact
from ml.evaluation import binary_metrics
from ml.features import encode_target
from ml.io import write_json
from ml.predictor import Predictor
from ml.train import TrainingError, run
from tests.conftest import REPO


def train_cli(inputs: dict, out: Path, config: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ml.train", "--features", inputs["features"], "--state", inputs["state"]]
    command += ["--config", config or inputs["config"], "--out", str(out)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def test_standalone_run_writes_a_verified_artifact_and_prints_its_report(training_inputs, tmp_path, spec):
    proc = train_cli(training_inputs, tmp_path / "model")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    manifest = verify_artifact(tmp_path / "model", report["manifest_sha256"])
    assert set(manifest["files"]) == {
        "model.txt",
        "feature_state.json",
        "metrics.json",
        "plots/roc.png",
        "plots/precision_recall.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
    }
    assert manifest["model_family"] == "lightgbm" and manifest["train_rows"] + manifest["holdout_rows"] == 7043
    assert "ROC AUC" in proc.stderr  # progress goes to stderr, the report to stdout
    # The published baselines on this data are about 0.83-0.85.
    assert 0.82 < report["metrics"]["roc_auc"] < 0.88
    # The artifact alone reproduces the reported metrics from raw rows, through the scoring path.
    predictor = Predictor.load(tmp_path / "model")
    holdout = training_inputs["holdout"]
    rescored = binary_metrics(encode_target(holdout, spec).to_numpy(), predictor.predict(holdout), 0.5)
    assert rescored["roc_auc"] == pytest.approx(report["metrics"]["roc_auc"], abs=1e-12)


def test_same_data_and_seed_give_identical_artifacts(training_inputs, tmp_path):
    first = run(training_inputs["features"], training_inputs["state"], training_inputs["config"], str(tmp_path / "a"))
    second = run(training_inputs["features"], training_inputs["state"], training_inputs["config"], str(tmp_path / "b"))
    assert first["metrics"] == second["metrics"]
    assert first["manifest_sha256"] == second["manifest_sha256"]


def test_a_different_seed_gives_a_different_model(training_inputs, tmp_path):
    config = training_inputs["training_config"].model_copy(update={"seed": 7})
    write_json(config.to_dict(), str(tmp_path / "seed7.json"))
    base = run(training_inputs["features"], training_inputs["state"], training_inputs["config"], str(tmp_path / "a"))
    other = run(
        training_inputs["features"], training_inputs["state"], str(tmp_path / "seed7.json"), str(tmp_path / "b")
    )
    assert other["manifest_sha256"] != base["manifest_sha256"]


def test_logistic_regression_family_is_stored_as_json(training_inputs, tmp_path):
    params = training_inputs["params"].training.hyperparameters["logistic_regression"]
    config = training_inputs["training_config"].model_copy(
        update={"model": "logistic_regression", "hyperparameters": params}
    )
    write_json(config.to_dict(), str(tmp_path / "lr.json"))
    report = run(training_inputs["features"], training_inputs["state"], str(tmp_path / "lr.json"), str(tmp_path / "m"))
    model = json.loads((tmp_path / "m" / "model.json").read_text())
    assert len(model["coef"]) == len(model["columns"]) == 61
    assert report["metrics"]["roc_auc"] > 0.82
    assert not list((tmp_path / "m").rglob("*.pkl")) and not list((tmp_path / "m").rglob("*.pickle"))


def test_an_existing_output_directory_is_never_overwritten(training_inputs, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("previous")
    proc = train_cli(training_inputs, out)
    assert proc.returncode == 1
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "xgboost"}, "training.model 'xgboost' is not one of lightgbm, logistic_regression"),
        ({"hyperparameters": {"num_leafs": 8}}, "unknown keys ['num_leafs']"),
        ({"threshold": 1.5}, "training.threshold must be in (0, 1)"),
    ],
)
def test_bad_configuration_fails_with_a_message_and_writes_nothing(training_inputs, tmp_path, change, message):
    write_json({**training_inputs["training_config"].to_dict(), **change}, str(tmp_path / "bad.json"))
    proc = train_cli(training_inputs, tmp_path / "model", config=str(tmp_path / "bad.json"))
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "model").exists()


def test_a_table_without_holdout_rows_is_refused(training_inputs, tmp_path):
    table = pd.read_parquet(training_inputs["features"]).assign(split="train")
    table.to_parquet(tmp_path / "all_train.parquet", index=False)
    with pytest.raises(TrainingError, match="0 holdout rows"):
        run(
            str(tmp_path / "all_train.parquet"),
            training_inputs["state"],
            training_inputs["config"],
            str(tmp_path / "m"),
        )
    assert not (tmp_path / "m").exists()


def test_a_table_missing_a_feature_column_is_refused_by_name(training_inputs, tmp_path):
    table = pd.read_parquet(training_inputs["features"]).drop(columns=["tenure"])
    table.to_parquet(tmp_path / "t.parquet", index=False)
    with pytest.raises(TrainingError, match=r"lacks columns \['tenure'\]"):
        run(str(tmp_path / "t.parquet"), training_inputs["state"], training_inputs["config"], str(tmp_path / "m"))


def test_shuffled_labels_train_a_model_no_better_than_chance(training_inputs, tmp_path):
    table = pd.read_parquet(training_inputs["features"])
    table["label"] = np.random.default_rng(0).permutation(table["label"].to_numpy())
    table.to_parquet(tmp_path / "shuffled.parquet", index=False)
    report = run(
        str(tmp_path / "shuffled.parquet"), training_inputs["state"], training_inputs["config"], str(tmp_path / "m")
    )
    assert 0.4 < report["metrics"]["roc_auc"] < 0.6


def test_a_weight_column_weighs_the_train_rows_and_bad_weights_are_refused(training_inputs, tmp_path):
    table = pd.read_parquet(training_inputs["features"])
    plain = run(training_inputs["features"], training_inputs["state"], training_inputs["config"], str(tmp_path / "a"))
    # Half the train rows nearly weightless: a different model from the same rows.
    weights = np.where(np.arange(len(table)) % 2 == 0, 1.0, 0.01)
    table.assign(weight=weights).to_parquet(tmp_path / "weighted.parquet", index=False)
    weighted = run(
        str(tmp_path / "weighted.parquet"), training_inputs["state"], training_inputs["config"], str(tmp_path / "b")
    )
    assert weighted["manifest_sha256"] != plain["manifest_sha256"]
    assert weighted["metrics"]["roc_auc"] != plain["metrics"]["roc_auc"]
    assert verify_artifact(tmp_path / "b", weighted["manifest_sha256"])["weighted"] is True
    table.assign(weight=0.0).to_parquet(tmp_path / "zero.parquet", index=False)
    with pytest.raises(TrainingError, match="'weight' has weights that are not positive"):
        run(str(tmp_path / "zero.parquet"), training_inputs["state"], training_inputs["config"], str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()
