"""Training entry point: `python -m ml.train --features URI --state URI --config URI --out URI`.

Reads the training feature table (a `split` column marks train / holdout rows, `label` is 0/1, an
optional `weight` column weighs the train rows, e.g. by recency: ml/windows.py),
the feature state it was built with, and the training configuration (JSON, see
ml/training_config.py); fits the configured model on the train rows, scores the holdout, and writes
a model artifact directory (ml/artifact.py): the model, the feature state, metrics.json, evaluation
plots and manifest.json. Every input comes from the arguments, so the same command runs on a laptop,
under Dagster Pipes, or in a cloud training container.

Under Dagster Pipes it reports the metrics and the artifact location as the asset's materialization;
started by hand it prints the same report as JSON on stdout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ml import io, runtime
from ml.artifact import manifest_sha256, publish, write_manifest
from ml.evaluation import binary_metrics
from ml.features import FeatureState
from ml.models import fit_model
from ml.pipes import reporter
from ml.plots import evaluation_plots
from ml.predictor import METRICS_FILE, STATE_FILE
from ml.split import HOLDOUT, TRAIN
from ml.training_config import TrainingConfig

WEIGHT = "weight"  # the optional row weight column of the feature table


class TrainingError(ValueError):
    """The inputs cannot be trained on; the message names the file and column."""


def train_artifact(table, state_doc: dict[str, Any], config: TrainingConfig, directory: Path) -> dict[str, Any]:
    """Fit, evaluate and write the artifact files into `directory`; return the report."""
    state = FeatureState.from_dict(state_doc)
    missing = [c for c in [*state.columns, "split", "label"] if c not in table.columns]
    if missing:
        raise TrainingError(f"the feature table lacks columns {missing[:10]} that the feature state names")
    sides = table["split"].astype(str)
    unknown = sorted(set(sides.unique()) - {TRAIN, HOLDOUT})
    if unknown:
        raise TrainingError(f"column 'split' has values {unknown}; expected {TRAIN!r} or {HOLDOUT!r}")
    train, holdout = table[sides == TRAIN], table[sides == HOLDOUT]
    if train.empty or holdout.empty:
        raise TrainingError(f"the feature table has {len(train)} train and {len(holdout)} holdout rows; both need rows")

    weights = None
    if WEIGHT in table.columns and WEIGHT not in state.columns:
        weights = train[WEIGHT].to_numpy(dtype="float64")
        if not (np.isfinite(weights).all() and (weights > 0).all()):
            raise TrainingError(f"column {WEIGHT!r} has weights that are not positive finite numbers")
    started = time.perf_counter()
    model = fit_model(
        config.model,
        train[state.columns],
        train["label"].to_numpy(),
        config.hyperparameters,
        config.seed,
        sample_weight=weights,
    )
    seconds = time.perf_counter() - started
    labels, scores = holdout["label"].to_numpy(dtype="int64"), model.predict(holdout[state.columns])
    metrics = binary_metrics(labels, scores, config.threshold)
    importance = model.importance()

    model_file = model.save(directory)
    io.write_json(state_doc, str(directory / STATE_FILE))
    io.write_json(metrics, str(directory / METRICS_FILE))
    (directory / "plots").mkdir()
    for name, png in evaluation_plots(labels, scores, config.threshold, importance).items():
        (directory / "plots" / f"{name}.png").write_bytes(png)
    top = [[name, value] for name, value in sorted(importance.items(), key=lambda kv: -abs(kv[1]))[:10]]
    manifest = write_manifest(
        directory,
        {
            "model_family": config.model,
            "model_file": model_file,
            "feature_columns": state.columns,
            "training_config": config.to_dict(),
            "train_rows": len(train),
            "holdout_rows": len(holdout),
            "train_positive_rate": float(np.mean(train["label"])),
            "weighted": weights is not None,
        },
    )
    return {
        "metrics": metrics,
        "model_family": config.model,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "training_seconds": round(seconds, 3),
        "top_features": top,
        "files": sorted(manifest["files"]),
        "manifest_sha256": manifest_sha256(directory),
    }


def read_config(uri: str) -> TrainingConfig:
    try:
        return TrainingConfig.model_validate(io.read_json(uri))
    except ValidationError as error:
        problems = "; ".join(
            f"training.{'.'.join(map(str, e['loc']))} "
            + ("is not a known key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
            for e in error.errors()
        )
        raise TrainingError(f"training config {uri}: {problems}") from None


def run(features: str, state: str, config: str, out: str) -> dict[str, Any]:
    training_config = read_config(config)
    table = io.read_parquet(features)
    state_doc = io.read_json(state)
    with tempfile.TemporaryDirectory(prefix="keel-train-") as tmp:
        report = train_artifact(table, state_doc, training_config, Path(tmp))
        report["artifact_uri"] = publish(Path(tmp), out)
    report["inputs"] = {"features": features, "state": state, "config": config}
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", required=True, help="training feature table (Parquet path or URI)")
    parser.add_argument("--state", required=True, help="feature state JSON the table was built with")
    parser.add_argument("--config", required=True, help="training configuration JSON")
    parser.add_argument("--out", required=True, help="artifact directory to create (path or URI)")
    return parser


INPUTS = ["features", "state", "config"]
OUTPUTS = ["out"]


def main(argv: list[str] | None = None) -> int:
    requested = vars(_parser().parse_args(argv))
    with reporter() as report:
        paths = runtime.resolve(requested, inputs=INPUTS, outputs=OUTPUTS)
        report.log(f"training from {requested['features']}")
        result = run(**paths)
        if paths != requested:  # in a cloud job: the backend delivers the artifact where the caller asked
            result["artifact_uri"] = requested["out"]
            result["inputs"] = {name: requested[name] for name in INPUTS}
        metrics = result["metrics"]
        report.log(
            f"{result['model_family']}: holdout ROC AUC {metrics['roc_auc']:.4f} on {result['holdout_rows']} rows; "
            f"trained on {result['train_rows']} rows in {result['training_seconds']:.1f}s"
        )
        report.materialization(result, data_version=result["manifest_sha256"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
