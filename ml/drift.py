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

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ml.drift_calibration import MEANING, calibrate, score
from ml.drift_impact import Predict, column_impact, score_spread
from ml.html_safety import safe_evidently_page
from ml.performance_estimate import compare as compare_performance
from ml.sample import id_hashes, smallest
from ml.spec import DatasetSpec, token_key

PREDICTION = "prediction"  # the model's score in a profile frame
DAY = "__day__"  # the day of a reference row, when the spec has a timestamp (day-to-day calibration)
SCORE = "score"  # the score column of a predictions file


@dataclass(frozen=True)
class VerdictSettings:
    """The rules' numbers (params.yaml `drift:`)."""

    impact_threshold: float = 0.05  # drifted columns' impact, in reference score spreads, that drifts the data set
    impact_rows: int = 400  # day rows the impact is measured on
    estimated_auc_drop: float = 0.03  # an estimated AUC drop of at least this ...
    noise_z: float = 3.0  # ... and beyond this many standard errors

    @classmethod
    def of(cls, section: Any) -> VerdictSettings:
        """From params.yaml `drift:` (ml/params.py DriftSection)."""
        return cls(section.impact_threshold, section.impact_rows, section.estimated_auc_drop, section.noise_z)


class DriftError(ValueError):
    """The frames or files cannot be compared; the message names the column, row or file at fault."""


@dataclass
class DriftResult:
    """What one drift report found. `verdict` is "drift" when one of its rules fired (`rules`, `because`)."""

    verdict: str  # "drift" | "no drift"
    dataset_drift: bool  # the columns' rule fired: impact >= impact_threshold (importance share without a model)
    drift_share: float  # share of the model's feature importance carried by the drifted columns
    drift_share_threshold: float
    drifted_columns: list[str]
    # per feature column: column, kind, method, score (None: not tested), threshold, drifted, importance,
    # reason (why it drifted, in words), calibration (how its threshold was found)
    columns: list[dict[str, Any]]
    prediction: dict[str, Any]  # {method, score, threshold, drifted, calibration}
    reference_rows: int
    current_rows: int
    html: str = field(repr=False)  # the complete Evidently page
    rules: list[str] = field(
        default_factory=list
    )  # the rules that fired: impact | importance | prediction | estimated performance
    impact: float | None = None  # the drifted columns' impact on the scores, in reference score spreads (with a model)
    impact_threshold: float | None = None
    performance: dict[str, Any] = field(default_factory=dict)  # the label-free AUC estimate (PerformanceEstimate)
    because: str = ""  # the verdict and the rules, with their figures, in one line

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
    kept = rows.iloc[keep].reset_index(drop=True)
    profile = _profile_columns(kept, spec, scores[keep])
    if spec.timestamp is not None and spec.timestamp.column in kept.columns:
        # Whole days of the reference: their day-to-day variation is part of "normal" (ml/drift_calibration.py).
        profile[DAY] = pd.to_datetime(kept[spec.timestamp.column], utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    return profile


def model_rows(profile: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """A profile frame's feature columns as the model reads raw rows: booleans back to the spec's first
    true and false tokens (the profile holds them as "true" / "false")."""
    rows = profile[spec.feature_columns].copy()
    true, false = spec.booleans.true_values[0], spec.booleans.false_values[0]
    for col in spec.columns.boolean:
        flags = rows[col].to_numpy(dtype=object)
        rows[col] = pd.Series(
            np.where(flags == "true", true, np.where(flags == "false", false, None)), index=rows.index, dtype=object
        )
    return rows


def profile_predict(predict_rows: Callable[[pd.DataFrame], np.ndarray], spec: DatasetSpec) -> Predict:
    """The model's scores on profile frames (what the impact rule needs), from its scores on raw rows
    (e.g. `Predictor.predict`)."""
    return lambda profile: np.asarray(predict_rows(model_rows(profile, spec)), dtype="float64")


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
        if frame[col].notna().any() and not pd.api.types.is_numeric_dtype(frame[col]):
            raise DriftError(f"column {col!r} of the {name} frame is {frame[col].dtype}, not numeric")
    if frame[PREDICTION].isna().all():
        raise DriftError(f"the {name} frame's {PREDICTION!r} column has no values")


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


def _weights(columns: list[str], importance: dict[str, float] | None) -> dict[str, float]:
    """Each column's share of the model's importance; equal shares without one (or when all are 0)."""
    values = {c: max(float((importance or {}).get(c, 0.0)), 0.0) for c in columns}
    total = sum(values.values())
    if not importance or total <= 0:
        return {c: 1.0 / len(columns) for c in columns}
    return {c: v / total for c, v in values.items()}


def _reason(column: str, kind: str, reference: pd.Series, current: pd.Series, drifted: bool) -> str:
    """In words, what is unusual about a drifted column (empty when it did not drift)."""
    if not drifted:
        return ""
    present = current.dropna()
    if present.empty:
        return "no values on this day"
    if present.nunique() == 1 and reference.dropna().nunique() > 1:
        value = present.iloc[0]
        return f"constant on this day ({value.item() if isinstance(value, np.generic) else value!r}) where the reference varies"
    if kind != "numeric":
        new = present[~present.isin(set(reference.dropna()))]
        if len(new):
            levels = ", ".join(map(repr, new.value_counts().index[:3]))
            return f"categories unseen in the reference on {len(new) / len(present):.0%} of rows ({levels})"
    return "distribution outside the reference's normal variation"


NO_VALUES = "no values on this day"


def _rules(result: DriftResult) -> str:
    """One line: the verdict, the rules that fired (or why none did), with their figures."""
    parts = []
    if result.impact is not None:
        moved = ", ".join(
            f"{c['column']} {c['impact']:.2f}"
            for c in sorted(result.columns, key=lambda c: -(c["impact"] or 0.0))
            if c["drifted"] and c["impact"] is not None
        )
        compare = ">=" if result.impact >= result.impact_threshold else "<"
        parts.append(
            f"impact: drifted columns move the model's scores by {result.impact:.2f} of their spread "
            f"{compare} {result.impact_threshold:.2f}" + (f" ({moved})" if moved else "")
        )
    else:
        compare = ">=" if result.drift_share >= result.drift_share_threshold else "<"
        parts.append(
            f"importance: drifted columns carry {result.drift_share:.2f} {compare} "
            f"{result.drift_share_threshold:.2f} of the model's importance"
        )
    emptied = [c["column"] for c in result.columns if c["reason"] == NO_VALUES]
    if emptied:
        parts.append(f"no values: {', '.join(emptied)} has none on this day")
    prediction = result.prediction
    if prediction["score"] is not None:
        compare = ">" if prediction["drifted"] else "<="
        parts.append(f"prediction: score distance {prediction['score']:.3f} {compare} {prediction['threshold']:.3f}")
    if result.performance:
        parts.append("estimated performance: " + result.performance["detail"])
    fired = result.rules or ["none"]
    return f"{result.verdict} (rules fired: {', '.join(fired)}); " + "; ".join(parts)


def drift_verdict(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: DatasetSpec,
    drift_share: float,
    importance: dict[str, float] | None = None,
    seed: int = 0,
    *,
    predict: Predict | None = None,
    settings: VerdictSettings | None = None,
) -> DriftResult:
    """The day's verdict, without the HTML page (`drift_report` adds Evidently's page).

    Each column's threshold is calibrated on the reference (ml/drift_calibration.py) for this day's
    size. The verdict is "drift" when one of these rules fires (`rules` names them):

    - **impact** (with `predict`, the model on profile frames): the drifted columns, together, move
      the model's scores on the day's rows, beyond what chance moves them at these sizes, by at least
      `settings.impact_threshold` of the spread of the reference's scores (ml/drift_impact.py). A column the model does not read never drifts the
      data set, however far it moves; one it leans on does, in proportion to what it changes.
      Without `predict`, **importance** stands in: the drifted columns carry at least `drift_share`
      of the model's feature importance (`importance`; equal shares without it).
    - **prediction**: the score distribution moved beyond its own calibrated threshold: the model now
      acts differently, whatever moved it.
    - **estimated performance**: the day's AUC estimated from the scores alone (ml/performance_estimate.py)
      is below the reference's by at least `settings.estimated_auc_drop` and beyond noise.

    A column with no values on the day (where the reference has some) drifts ("no values on this day")
    instead of failing the report, and makes the data set drift whatever its impact or importance (rule
    **no values**), so an emptied feature reaches a person (the drift alert names it).
    """
    if not 0.0 < drift_share <= 1.0:
        raise DriftError(f"drift_share must be in (0, 1], got {drift_share}")
    settings = settings or VerdictSettings()
    _check_frame(reference, spec, "reference")
    _check_frame(current, spec, "current")
    kinds = {**_kinds(spec), PREDICTION: "numeric"}
    days = reference[DAY].to_numpy() if DAY in reference.columns else None
    calibrations = calibrate(reference, kinds, len(current), days=days, seed=seed)
    weights = _weights(spec.feature_columns, importance)
    verdicts = {}
    for c, kind in kinds.items():
        cal = calibrations[c]
        if not reference[c].notna().any():
            verdicts[c] = (None, False, "no values in the reference: not tested")
        elif not current[c].notna().any():
            verdicts[c] = (None, True, NO_VALUES)
        else:
            value = score(reference[c], current[c], kind)
            drifted = value > cal.threshold
            verdicts[c] = (value, drifted, _reason(c, kind, reference[c], current[c], drifted))
    spread = score_spread(reference[PREDICTION])
    impacts: dict[str, float | None] = dict.fromkeys(spec.feature_columns)
    noises: dict[str, float | None] = dict.fromkeys(spec.feature_columns)
    if predict is not None:
        for i, (c, kind) in enumerate(_kinds(spec).items()):
            if verdicts[c][1]:
                raw, noise = column_impact(
                    predict, reference, current, c, kind, rows=settings.impact_rows, seed=seed + i
                )
                impacts[c], noises[c] = max(raw - noise, 0.0) / spread, noise / spread
    columns = [
        {
            "column": c,
            "kind": kind,
            "method": calibrations[c].method,
            "score": verdicts[c][0],
            "threshold": float(calibrations[c].threshold),
            "drifted": verdicts[c][1],
            "importance": round(weights[c], 4),
            "impact": None if impacts[c] is None else round(float(impacts[c]), 4),
            "impact_noise": None if noises[c] is None else round(float(noises[c]), 4),
            "reason": verdicts[c][2],
            "calibration": calibrations[c].basis,
        }
        for c, kind in _kinds(spec).items()
    ]
    value, drifted, _ = verdicts[PREDICTION]
    prediction = {
        "method": calibrations[PREDICTION].method,
        "score": value,
        "threshold": float(calibrations[PREDICTION].threshold),
        "drifted": drifted,
        "calibration": calibrations[PREDICTION].basis,
    }
    drifted_columns = [c["column"] for c in columns if c["drifted"]]
    share = float(sum(weights[c] for c in drifted_columns))
    rules = []
    if predict is not None:
        impact = float(sum(impacts[c] or 0.0 for c in drifted_columns))
        dataset_drift = impact >= settings.impact_threshold
        if dataset_drift:
            rules.append("impact")
    else:
        impact = None
        dataset_drift = share >= drift_share
        if dataset_drift:
            rules.append("importance")
    # A feature the reference has values for and the day has none of is a broken input, not a small
    # shift: whatever it weighs, the day drifts, naming the column.
    if any(c["reason"] == NO_VALUES for c in columns):
        dataset_drift = True
        rules.append("no values")
    if prediction["drifted"]:
        rules.append("prediction")
    estimate = compare_performance(
        reference[PREDICTION].to_numpy(dtype="float64", na_value=np.nan),
        current[PREDICTION].to_numpy(dtype="float64", na_value=np.nan),
        min_drop=settings.estimated_auc_drop,
        z=settings.noise_z,
        seed=seed,
    )
    if estimate.dropped:
        rules.append("estimated performance")
    result = DriftResult(
        verdict="drift" if rules else "no drift",
        dataset_drift=dataset_drift,
        drift_share=share,
        drift_share_threshold=drift_share,
        drifted_columns=drifted_columns,
        columns=columns,
        prediction=prediction,
        reference_rows=len(reference),
        current_rows=len(current),
        html="",
        rules=rules,
        impact=impact,
        impact_threshold=settings.impact_threshold,
        performance=estimate.to_dict(),
    )
    result.because = _rules(result)
    return result


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: DatasetSpec,
    drift_share: float,
    importance: dict[str, float] | None = None,
    seed: int = 0,
    *,
    predict: Predict | None = None,
    settings: VerdictSettings | None = None,
) -> DriftResult:
    """`drift_verdict`, and Evidently's report of the same tests with the same thresholds as its page.

    Evidently runs each column's test (normed Wasserstein or Jensen-Shannon) with the calibrated
    threshold, so its page shows the numbers the verdict used; the verdict and each column's reason,
    importance, impact and calibration are added on top of the page. Evidently's own data-set line
    (its count of drifted columns against a share) is left off the page: the verdict is the project's.
    """
    result = drift_verdict(reference, current, spec, drift_share, importance, seed, predict=predict, settings=settings)
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    preset = drift_table_preset()

    tested = {c["column"]: c for c in result.columns if c["score"] is not None}
    categorical = [c for c in [*spec.columns.categorical, *spec.columns.boolean] if c in tested]
    definition = DataDefinition(
        numerical_columns=[c for c in spec.columns.numeric if c in tested] + [PREDICTION],
        categorical_columns=categorical,
    )
    metrics: list[Any] = [
        ValueDrift(column=PREDICTION, method=result.prediction["method"], threshold=result.prediction["threshold"])
    ]
    if tested:
        metrics.insert(
            0,
            preset(
                columns=list(tested),
                per_column_method={c: v["method"] for c, v in tested.items()},
                per_column_threshold={c: v["threshold"] for c, v in tested.items()},
                drift_share=1.0,  # Evidently counts drifted columns; the verdict weighs them by importance
            ),
        )
    ref_frame, cur_frame = _with_categories(reference, current, categorical)
    snapshot = Report(metrics).run(
        current_data=Dataset.from_pandas(cur_frame[[*tested, PREDICTION]], data_definition=definition),
        reference_data=Dataset.from_pandas(ref_frame[[*tested, PREDICTION]], data_definition=definition),
    )
    # Evidently embeds the data (column names, category values) in a <script> block as it is.
    result.html = explained_html(safe_evidently_page(snapshot.get_html_str(as_iframe=False)), result)
    return result


DATASET_LINE = "Dataset Drift is"  # Evidently's data-set verdict on its page


@functools.cache
def drift_table_preset() -> type:
    """Evidently's DataDriftPreset as its page shows it: the counts of drifted columns and the per-column
    table, without its "Dataset Drift is (NOT) detected" line, which counts columns against a share and
    would contradict the project's verdict (drawn above the page).

    The stock preset also computes and draws a ValueDrift metric per column, which its page never
    shows (its render draws the table only): about 40 % of the report's time, every night.
    """
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    class DriftTablePreset(DataDriftPreset):
        def generate_metrics(self, context):
            return [m for m in super().generate_metrics(context) if not isinstance(m, ValueDrift)]

        def render(self, context, child_widgets=None):
            widgets = super().render(context, child_widgets)
            return [w for w in widgets if DATASET_LINE not in str(getattr(w, "params", ""))]

    return DriftTablePreset


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _impact(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def explained_html(page: str, result: DriftResult) -> str:
    """Evidently's page with the verdict, the rules and their figures, and each column's test, threshold,
    impact and calibration on top."""
    rows = "".join(
        f"<tr><td>{escape(c['column'])}</td><td>{escape(c['method'])}</td>"
        f"<td>{_number(c['score'])}</td>"
        f"<td>{c['threshold']:.4f}</td><td>{'yes' if c['drifted'] else 'no'}</td><td>{c['importance']:.3f}</td>"
        f"<td>{_impact(c.get('impact'))}</td>"
        f"<td>{escape(c['reason'])}</td><td>{escape(c['calibration'])}</td></tr>"
        for c in result.columns
    )
    meanings = "".join(f"<li><b>{escape(m)}</b>: {escape(text)}</li>" for m, text in MEANING.items())
    rules = "".join(f"<li>{escape(part)}</li>" for part in result.because.split("; ")[1:])
    fired = ", ".join(result.rules) or "none"
    block = (
        '<section style="font-family:sans-serif;margin:16px">'
        f"<h2>Verdict: {escape(result.verdict)}</h2>"
        f"<p>Rules fired: <b>{escape(fired)}</b>. The verdict is drift when any rule fires:</p>"
        f"<ul>{rules}</ul>"
        "<p>Each threshold is the score that days without drift reach by themselves, calibrated on the "
        "reference at this day's size. A column's impact is the mean change of a row's expected score when "
        "the column's values follow the day's distribution instead of the reference's, beyond what chance "
        "gives at these sizes, in standard deviations of the reference's scores. Evidently's count of drifted columns below is not the "
        "verdict.</p>"
        f"<ul>{meanings}</ul>"
        "<table border=1 cellpadding=4 style='border-collapse:collapse'><tr><th>column</th><th>test</th>"
        "<th>score</th><th>threshold</th><th>drifted</th><th>importance</th><th>impact</th><th>reason</th>"
        f"<th>calibration</th></tr>{rows}</table></section>"
    )
    at = page.find("<body")
    at = page.find(">", at) + 1 if at >= 0 else 0
    return page[:at] + block + page[at:]


# --- the page's shared script ------------------------------------------------------------------------


@functools.cache
def evidently_bundle() -> tuple[str, str]:
    """(file name, text) of the JavaScript bundle Evidently inlines in every page (about 3.5 MB)."""
    import evidently
    from evidently.legacy.utils.dashboard import STATIC_PATH

    with open(f"{STATIC_PATH}/index.js", encoding="utf-8") as file:
        return f"evidently-{evidently.__version__}.js", file.read()


def with_shared_bundle(page: str) -> tuple[str, str | None]:
    """The page with Evidently's inlined bundle replaced by a script beside it, and that script's file name.

    Every day's page inlines the same 3.5 MB bundle; written once beside the pages and referenced by a
    relative path, it is fetched once and cached by the browser, and a page is its data alone. The name
    carries Evidently's version, so pages drawn by another version keep their own bundle. A page that does
    not inline the bundle as expected is returned whole (None): it still opens, only larger.
    """
    name, bundle = evidently_bundle()
    inlined = f"<script>{bundle}</script>"
    if inlined not in page:
        return page, None
    return page.replace(inlined, f'<script src="{name}"></script>', 1), name
