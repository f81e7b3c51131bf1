"""Where each artifact lives in the artifact store, computed from what identifies it. The one place.

    records/<asset>/<day>.json               a daily asset's value (RecordIOManager)
    records/<asset>/runs/<run id>.json       any other asset's value, per run that made it
    training_sets/<run id>/<file>            a training set: rows with their split, holdout, reference
    features/<run id>/<file>                 a fitted feature state and the training feature table
    models/candidates/<run id>/              a candidate model artifact (manifest.json and its files)
    models/candidates/<run id>.config.json   the training config it was trained with
    models/registered/<model>/<manifest sha256>/  a registered version, published for the compute backends
    models/published_for/<model>/<manifest sha256>/v<version>.json  a version (and its MLflow run) whose own
                                             registered manifest was checked to hash to that sha (resources/published.py)
    predictions/day=<day>/                   a day's scores: part files and a capture (a seeded sample of the
                                             scored rows, for the drift report), named by manifest.json (ml/predictions.py)
    predictions/<day>.config.json            the day's scoring config
    monitoring/drift/<day>.html              the day's Evidently report
    monitoring/drift/evidently-<version>.js  the script every day's report shares (Evidently's bundle)
    monitoring/importance/<model>/<manifest sha256>.json  a model's importance per column, for the drift report
    cards/<model>/v<version>.{json,html}     a registered version's model card (also kept in MLflow)

Run ids key what a run builds, so two runs at once never overwrite each other's files; days key
what is replaced when a day is scored again; a published model is keyed by what it contains (its
manifest's sha256), so a version number reused by a new MLflow store never finds an old copy.
"""

from __future__ import annotations

import dagster as dg

from resources.storage import ArtifactStore


def record(store: ArtifactStore, key: dg.AssetKey, *, partition: str | None = None, run_id: str | None = None) -> str:
    """The JSON file holding an asset's value: per partition for daily assets, else per run."""
    name = key.to_python_identifier()
    if partition is not None:
        return store.uri("records", name, f"{partition}.json")
    if run_id is None:
        raise ValueError(f"the record of {key.to_user_string()} needs a partition or a run id")
    return store.uri("records", name, "runs", f"{run_id}.json")


# The files of a training set and of its features.
TRAINING_ROWS, HOLDOUT_ROWS, REFERENCE_ROWS = "rows.parquet", "holdout_rows.parquet", "reference_rows.parquet"
FEATURE_STATE, FEATURE_TABLE = "feature_state.json", "features.parquet"


def training_set(store: ArtifactStore, run_id: str, file: str) -> str:
    return store.uri("training_sets", run_id, file)


def features(store: ArtifactStore, run_id: str, file: str) -> str:
    return store.uri("features", run_id, file)


def candidate(store: ArtifactStore, run_id: str) -> str:
    return store.uri("models", "candidates", run_id)


def candidate_window(store: ArtifactStore, run_id: str, window: str, suffix: str = "") -> str:
    """One window's candidate (a model directory) or, with `suffix`, a file beside it it was trained from."""
    return store.uri("models", "candidates", f"{run_id}.windows", window + suffix)


def candidate_config(store: ArtifactStore, run_id: str) -> str:
    return store.uri("models", "candidates", f"{run_id}.config.json")


def published_model(store: ArtifactStore, model: str, manifest_sha256: str) -> str:
    return store.uri("models", "registered", model, manifest_sha256)


def published_for(store: ArtifactStore, model: str, manifest_sha256: str, version: int | None = None) -> str:
    """The versions a published copy was confirmed for (a folder), or one version's record in it."""
    parts = ["models", "published_for", model, manifest_sha256]
    return store.uri(*parts) if version is None else store.uri(*parts, f"v{version}.json")


def predictions(store: ArtifactStore, day: str) -> str:
    """The day's output folder: its manifest and attempts (read it with ml/predictions.py)."""
    return store.uri("predictions", f"day={day}")


def prediction_attempt(store: ArtifactStore, day: str, run_id: str) -> str:
    """Where one run's shards write their parts before the day's manifest names them."""
    return store.uri("predictions", f"day={day}", f"run-{run_id}")


def scoring_config(store: ArtifactStore, day: str) -> str:
    return store.uri("predictions", f"{day}.config.json")


def drift_report(store: ArtifactStore, day: str) -> str:
    return store.uri("monitoring", "drift", f"{day}.html")


def drift_script(store: ArtifactStore, name: str) -> str:
    """The script the drift reports share, beside them: each page refers to it by `name`."""
    return store.uri("monitoring", "drift", name)


# What the endpoint answered on a day (served_requests), in the shapes the monitoring assets read.
def served_predictions(store: ArtifactStore, day: str) -> str:
    return store.uri("serving", "served", day, "predictions.parquet")


def served_capture(store: ArtifactStore, day: str) -> str:
    return store.uri("serving", "served", day, "capture.parquet")


def model_importance(store: ArtifactStore, model: str, manifest_sha256: str) -> str:
    return store.uri("monitoring", "importance", model, f"{manifest_sha256}.json")


def model_card(store: ArtifactStore, model: str, version: int, suffix: str) -> str:
    return store.uri("cards", model, f"v{version}.{suffix}")
