"""Drift between a model's reference rows and a day's scored rows, as one Evidently report.

The reference is stored with the model at registration (`reference_profile`: the holdout rows' features
and the model's scores on them); a day's rows come from the capture the scorer wrote while scoring them
(`load_capture`), so the report never reads the day's file again. Both are sampled down by a seeded hash
of the id (ml/sample.py), so a report costs the same whatever the day's volume.
`drift_report` runs one Evidently Report: data drift on the spec's feature columns and prediction drift
on the scores. Every method, threshold and per-column verdict is Evidently's own, read from its result.

Evidently is imported inside the functions: importing it takes seconds, and most callers of `ml` never
draw a report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ml.sample import id_hashes, smallest
from ml.spec import DatasetSpec, token_key

PREDICTION = "prediction"  # the model's score in a profile frame
SCORE = "score"  # the score column of a predictions file


class DriftError(ValueError):
    """The frames or files cannot be compared; the message names the column, row or file at fault."""


@dataclass
class DriftResult:
    """What one drift report found. `verdict` is "drift" when the data drifted OR the prediction drifted."""

    verdict: str  # "drift" | "no drift"
    dataset_drift: bool  # share of drifted feature columns >= drift_share_threshold
    drift_share: float  # share of feature columns Evidently found drifted
    drift_share_threshold: float
    drifted_columns: list[str]
    columns: list[dict[str, Any]]  # {column, kind, method, score, threshold, drifted} per feature column
    prediction: dict[str, Any]  # {method, score, threshold, drifted}
    reference_rows: int
    current_rows: int
    html: str = field(repr=False)  # the complete Evidently page

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        del document["html"]
        return document


def _kinds(spec: DatasetSpec) -> dict[str, str]:
    columns = spec.columns
    return {
        **{c: "numeric" for c in columns.numeric},
        **{c: "categorical" for c in columns.categorical},
        **{c: "boolean" for c in columns.boolean},
    }


def _require(columns: Any, needed: list[str], where: str) -> None:
    missing = [c for c in needed if c not in set(columns)]
    if missing:
        raise DriftError(f"{where} is missing columns {missing}")


def _profile_columns(frame: pd.DataFrame, spec: DatasetSpec, scores: np.ndarray) -> pd.DataFrame:
    """The spec's feature columns as Evidently should see them, plus the scores as `prediction`."""
    true_keys, false_keys = spec.booleans.true_keys, spec.booleans.false_keys
    out = {}
    for col, kind in _kinds(spec).items():
        values = frame[col]
        if kind == "numeric":
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values[numbers.isna() & values.notna()]
            if len(bad):
                raise DriftError(f"numeric column {col!r} has non-numeric values: {bad.unique()[:5].tolist()}")
            out[col] = numbers.astype("float64").to_numpy()
        elif kind == "categorical":
            text = values.astype(object)
            out[col] = text.where(text.isna(), text.map(str)).to_numpy()
        else:
            # Tokens as true / false, so 1, "1" and True on either side are the same category.
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            keys = [token_key(u) for u in uniques]
            unknown = [k for k in keys if k not in true_keys and k not in false_keys]
            if unknown:
                raise DriftError(f"boolean column {col!r} has values that are neither true nor false: {unknown[:5]}")
            lookup = np.array(["true" if k in true_keys else "false" for k in keys] + [None], dtype=object)
            out[col] = lookup[codes]
    profile = pd.DataFrame(out)
    profile[PREDICTION] = np.asarray(scores, dtype="float64")
    return profile


def reference_profile(
    rows: pd.DataFrame, scores: np.ndarray, spec: DatasetSpec, max_rows: int, seed: int
) -> pd.DataFrame:
    """The frame stored with a model: its holdout rows' feature columns and its scores on them (`prediction`).

    At most `max_rows` rows: those whose seeded id hash is smallest, in their original order. A row is kept
    or dropped by its own id, so appending rows can only displace kept rows by new ones, never reshuffle.
    """
    if max_rows < 1:
        raise DriftError(f"max_rows must be at least 1, got {max_rows}")
    if rows.empty:
        raise DriftError("reference rows are empty: a drift reference needs the model's holdout rows")
    _require(rows.columns, [spec.id.column, *spec.feature_columns], "reference rows")
    scores = np.asarray(scores)
    if scores.shape != (len(rows),):
        raise DriftError(f"{len(rows)} reference rows but scores of shape {scores.shape}: one score per row")
    keep = np.arange(len(rows))
    if len(rows) > max_rows:
        keep = smallest(id_hashes(rows[spec.id.column], seed), keep, max_rows)
    return _profile_columns(rows.iloc[keep].reset_index(drop=True), spec, scores[keep])


def load_capture(uri: str, spec: DatasetSpec) -> pd.DataFrame:
    """A scored day's capture (the scorer's seeded sample: id, feature columns, score) as a profile frame."""
    try:
        file = pq.ParquetFile(fsspec.open(uri, "rb").open())
    except FileNotFoundError:
        raise DriftError(f"capture not found: {uri}; score the day first") from None
    _require(file.schema_arrow.names, [spec.id.column, *spec.feature_columns, SCORE], f"capture {uri}")
    frame = file.read(columns=[*spec.feature_columns, SCORE]).to_pandas()
    if frame.empty:
        raise DriftError(f"capture {uri} has no rows")
    return _profile_columns(frame, spec, frame[SCORE].to_numpy())


# --- the report -------------------------------------------------------------------------------------


def _check_frame(frame: pd.DataFrame, spec: DatasetSpec, name: str) -> None:
    if frame.empty:
        raise DriftError(f"the {name} frame is empty: there are no rows to compare")
    if PREDICTION not in frame.columns:
        hint = " (store the model's holdout scores with it: reference_profile)" if name == "reference" else ""
        raise DriftError(f"the {name} frame has no {PREDICTION!r} column{hint}")
    _require(frame.columns, spec.feature_columns, f"the {name} frame")
    for col in [*spec.columns.numeric, PREDICTION]:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise DriftError(f"column {col!r} of the {name} frame is {frame[col].dtype}, not numeric")
    empty = [c for c in [*spec.feature_columns, PREDICTION] if frame[c].isna().all()]
    if empty:
        raise DriftError(f"columns {empty} of the {name} frame have no values")


def _with_categories(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Category columns with the same levels on both sides: Evidently counts these several times faster
    than Python strings, and the counts (so the scores) are the same."""
    reference, current = reference.copy(deep=False), current.copy(deep=False)
    for col in columns:
        levels = sorted(set(reference[col].dropna()) | set(current[col].dropna()), key=str)
        reference[col] = pd.Categorical(reference[col], categories=levels)
        current[col] = pd.Categorical(current[col], categories=levels)
    return reference, current


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, spec: DatasetSpec, drift_share: float) -> DriftResult:
    """Data drift on the feature columns and prediction drift on the scores, in one Evidently report.

    `dataset_drift` is Evidently's: the share of drifted feature columns reaches `drift_share`. The
    verdict is "drift" when the dataset drifted OR the prediction drifted: a moved score distribution
    means the model now acts differently, even when each feature moved too little to count.
    """
    if not 0.0 < drift_share <= 1.0:
        raise DriftError(f"drift_share must be in (0, 1], got {drift_share}")
    _check_frame(reference, spec, "reference")
    _check_frame(current, spec, "current")
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = spec.feature_columns
    definition = DataDefinition(
        numerical_columns=[*spec.columns.numeric, PREDICTION],
        categorical_columns=[*spec.columns.categorical, *spec.columns.boolean],
    )
    report = Report(
        [DataDriftPreset(columns=features, drift_share=drift_share), ValueDrift(column=PREDICTION)],
        include_tests=True,  # the tests carry Evidently's own drift verdict per column and for the dataset
    )
    reference, current = _with_categories(reference, current, [*spec.columns.categorical, *spec.columns.boolean])
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[[*features, PREDICTION]], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[[*features, PREDICTION]], data_definition=definition),
    )
    found = read_verdicts(snapshot.dict())
    kinds = _kinds(spec)
    columns = [{"column": c, "kind": kinds[c], **found["columns"][c]} for c in features]
    prediction = found["columns"][PREDICTION]
    drifted = [c["column"] for c in columns if c["drifted"]]
    dataset_drift = found["dataset_drift"]
    return DriftResult(
        verdict="drift" if dataset_drift or prediction["drifted"] else "no drift",
        dataset_drift=dataset_drift,
        drift_share=found["share"],
        drift_share_threshold=drift_share,
        drifted_columns=drifted,
        columns=columns,
        prediction=prediction,
        reference_rows=len(reference),
        current_rows=len(current),
        html=snapshot.get_html_str(as_iframe=False),
    )


def read_verdicts(document: dict[str, Any]) -> dict[str, Any]:
    """Per column: method, score, threshold (the metric) and drifted (its test); the dataset's count test."""
    status = {t["metric_config"]["metric_id"]: t["status"] for t in document["tests"]}
    columns: dict[str, dict[str, Any]] = {}
    share, dataset_drift = None, None
    for metric in document["metrics"]:
        config, kind = metric["config"], metric["config"]["type"]
        verdict = status.get(metric["id"])
        if verdict not in ("SUCCESS", "FAIL"):
            raise DriftError(f"Evidently gave no drift verdict for {metric['metric_name']} (test status {verdict})")
        if kind.endswith(":ValueDrift"):
            columns[config["column"]] = {
                "method": config["method"],
                "score": float(metric["value"]),
                "threshold": float(config["threshold"]),
                "drifted": verdict == "FAIL",
            }
        elif kind.endswith(":DriftedColumnsCount"):
            share, dataset_drift = float(metric["value"]["share"]), verdict == "FAIL"
    if share is None:
        raise DriftError("Evidently's result has no drifted-columns count")
    return {"columns": columns, "share": share, "dataset_drift": dataset_drift}
