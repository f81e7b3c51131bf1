"""A throw-away project for the endpoint: params.yaml, an MLflow registry with two versions, a store.

v1 is LightGBM with the project's settings, v2 a logistic regression on the same features, so
their scores differ on every row; v1 is the `champion`. Used by the serving tests and by
benchmarks/serving.py. Nothing is published to the store beforehand: the endpoint publishes a version from the
registry on its first load.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ml.example_data import example_frame
from ml.ingest import with_ids
from ml.params import load_params
from ml.sources import as_text
from ml.split import split_rows, training_features
from ml.train import train_artifact
from resources.registry import CHAMPION, ModelRegistry

REPO = Path(__file__).resolve().parents[2]


def example_rows() -> pd.DataFrame:
    """The example data as the import writes it, without the target: what a caller would send."""
    spec = load_params(REPO / "params.yaml").dataset
    frame = with_ids(example_frame(spec.name), spec)
    for column in spec.text_columns:
        frame[column] = as_text(frame[column])
    return frame.drop(columns=[spec.target.column])


def make_project(root: Path) -> ModelRegistry:
    """params.yaml and a registry under `root` with v1 (champion) and v2; the registry."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    params = load_params(root / "params.yaml")
    spec = params.dataset
    raw = with_ids(example_frame(spec.name), spec)
    for column in spec.text_columns:
        raw[column] = as_text(raw[column])
    config = params.training.resolve()
    rows = split_rows(raw, spec, fraction=config.holdout_fraction, seed=config.seed)
    table, state = training_features(rows, spec, params.features)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    registry = ModelRegistry(root=str(root / "var" / "mlflow"))
    name = params.model_name
    for n, family in enumerate(["lightgbm", "logistic_regression"], start=1):
        with tempfile.TemporaryDirectory(prefix="keel-serving-model-") as tmp:
            report = train_artifact(table, state.to_dict(), params.training.resolve(model=family), Path(tmp))
            run_id = registry.log_training_run(name, f"v{n}", {"model": family}, report["metrics"], {}, tmp)
        registry.register(name, run_id, {"manifest_sha256": report["manifest_sha256"]})
    registry.move_alias(name, CHAMPION, 1, None, reason="first model", actor="tests")
    return registry
