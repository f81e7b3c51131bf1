"""The one feature code path, for training and for scoring.

`fit_features` learns a `FeatureState` from training rows: per numeric column the clipping bounds
and the imputation value, per categorical column its levels, per boolean column its fill value. The
state is plain JSON. `feature_matrix` applies it to any rows, one row at a time in effect, so that the
training table and a scoring chunk computed from the same rows are identical; it reads a pandas
frame (training) or the Arrow batch the scorer reads (no pandas copy of the chunk), and
`transform` is the same matrix as a frame.

Defined behaviour at scoring time:
- numeric: values are clipped to the training bounds; missing values take the training median;
  columns the spec calls nullable also get a `<col>__missing__` indicator.
- categorical: one column per training level; a value not seen in training (or too rare to keep)
  sets `<col>__other__`; a missing value sets `<col>__missing__`.
- boolean: tokens from the spec map to 1/0; a missing value takes the training mode; a token that
  is neither true nor false is an error that names the column and the values.
- a feature column absent from the rows is an error that names it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ml.sources import as_text
from ml.spec import DatasetSpec, token_key

STATE_VERSION = 1


class FeatureError(ValueError):
    """Rows cannot be turned into features; the message names the column and values at fault."""


class FeatureConfig(BaseModel):
    """The `features:` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clip_quantiles: tuple[float, float] = Field(
        default=(0.001, 0.999), description="Numeric values are clipped to these training quantiles."
    )
    min_category_count: int = Field(default=5, ge=1, description="Rarer categories are folded into `__other__`.")
    max_categories: int = Field(default=50, ge=1, description="At most this many levels per categorical column.")

    @field_validator("clip_quantiles")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"clip_quantiles must satisfy 0 <= low < high <= 1, got {list(value)}")
        return value


@dataclass(frozen=True)
class NumericState:
    column: str
    lower: float
    upper: float
    fill: float
    missing_indicator: bool
    name: str | None = None  # the output column (a LightGBM-safe form of `column`); None: `column` itself

    @property
    def feature(self) -> str:
        return self.name or self.column


@dataclass(frozen=True)
class CategoricalState:
    column: str
    levels: list[str]
    names: list[str]  # output column per level, same order


@dataclass(frozen=True)
class BooleanState:
    column: str
    fill: int
    name: str | None = None  # as NumericState.name

    @property
    def feature(self) -> str:
        return self.name or self.column


@dataclass(frozen=True)
class FeatureState:
    numeric: list[NumericState]
    categorical: list[CategoricalState]
    boolean: list[BooleanState]
    true_tokens: list[str]
    false_tokens: list[str]
    fitted_rows: int
    version: int = STATE_VERSION
    columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureState:
        if data.get("version") != STATE_VERSION:
            raise FeatureError(
                f"feature state version {data.get('version')!r} is not {STATE_VERSION}; refit the features"
            )
        return cls(
            numeric=[NumericState(**n) for n in data["numeric"]],
            categorical=[CategoricalState(**c) for c in data["categorical"]],
            boolean=[BooleanState(**b) for b in data["boolean"]],
            true_tokens=list(data["true_tokens"]),
            false_tokens=list(data["false_tokens"]),
            fitted_rows=int(data["fitted_rows"]),
            version=data["version"],
            columns=list(data["columns"]),
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureState:
        return cls.from_dict(json.loads(text))

    @property
    def input_columns(self) -> list[str]:
        return [s.column for s in (*self.numeric, *self.categorical, *self.boolean)]


SAFE_NAME = re.compile(r"[0-9A-Za-z_]+")


def _slug(text: str) -> str:
    # LightGBM rejects JSON punctuation in feature names and warns on spaces.
    return re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower() or "blank"


def _safe_names(columns: list[str]) -> dict[str, str]:
    """An output name per source column that models keep as it is (LightGBM rewrites spaces and
    punctuation, so "dew point" would come back as "dew_point" and no longer match the rows)."""
    names, used = {}, set()
    for column in columns:
        base = (
            column if SAFE_NAME.fullmatch(column) else (re.sub(r"[^0-9A-Za-z_]+", "_", column).strip("_") or "column")
        )
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        names[column] = name
    return names


def _level_names(column: str, levels: list[str]) -> list[str]:
    names, used = [], {f"{column}__other__", f"{column}__missing__"}
    for level in levels:
        name, n = f"{column}__{_slug(level)}", 2
        while name in used:
            name, n = f"{column}__{_slug(level)}_{n}", n + 1
        used.add(name)
        names.append(name)
    return names


Rows = pd.DataFrame | pa.RecordBatch | pa.Table
Column = pd.Series | pa.Array


def _names(rows: Rows) -> list[str]:
    return list(rows.columns) if isinstance(rows, pd.DataFrame) else rows.schema.names


def _require(frame: Rows, columns: list[str]) -> None:
    present = set(_names(frame))
    missing = [c for c in columns if c not in present]
    if missing:
        raise FeatureError(f"feature columns missing from the rows: {missing}")


def _column(rows: Rows, name: str) -> Column:
    if isinstance(rows, pd.DataFrame):
        return rows[name]
    values = rows.column(name)
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _is_text(values: Column) -> bool:
    return isinstance(values, pa.Array) and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type))


def _numeric(values: Column, column: str) -> np.ndarray:
    """float64 per row, NaN where missing. Arrow numbers are read as they are; anything else as pandas reads it."""
    if isinstance(values, pa.Array):
        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            return values.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
        values = values.to_pandas()
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[numbers.isna() & values.notna()]
    if len(bad):
        raise FeatureError(f"column {column!r} has non-numeric values: {bad.unique()[:5].tolist()}")
    return numbers.to_numpy(dtype="float64", na_value=np.nan)


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.Series(_numeric(frame[column], column), index=frame.index)


def _factorized(values: Column, key) -> tuple[np.ndarray, list[str]]:
    """Codes per row (-1 where missing) and the key of each distinct value: work per distinct value, not per row.

    Arrow text is encoded by Arrow (the same distinct values and keys as pandas finds, without making a
    Python string per row); any other Arrow type goes through pandas, exactly as the training rows did.
    """
    encoded = _arrow_encoded(values) if isinstance(values, pa.Array) else None
    if encoded is not None:
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64", copy=False)
        return codes, [key(u) for u in encoded.dictionary.to_pylist()]
    if isinstance(values, pa.Array):
        values = values.to_pandas()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes, [key(u) for u in uniques]


def _arrow_encoded(values: pa.Array) -> pa.DictionaryArray | None:
    """The column as an Arrow dictionary of the very values pandas would find; None: leave it to pandas."""
    if isinstance(values, pa.DictionaryArray):
        # Text read as dictionaries (the scorer asks the Parquet reader for that) is encoded already.
        return values if _is_text(values.dictionary) else None
    if _is_text(values):
        return values.dictionary_encode()
    if pa.types.is_integer(values.type):
        # pandas reads integers with nulls as float64 (1 becomes 1.0, "1.0" as text): so does this.
        return (values.cast(pa.float64(), safe=False) if values.null_count else values).dictionary_encode()
    return None  # floats (NaN, -0.0), booleans, dates...: pandas' own rules


def _boolean(values: Column, column: str, true: set[str], false: set[str], missing: float = np.nan) -> np.ndarray:
    """1.0 / 0.0 per token, `missing` where missing."""
    codes, keys = _factorized(values, token_key)
    unknown = [i for i, k in enumerate(keys) if k not in true and k not in false]
    if unknown:  # a dictionary read from Parquet may hold values that no row of this chunk has
        unknown = [keys[i] for i in unknown if (codes == i).any()]
    if unknown:
        raise FeatureError(
            f"boolean column {column!r} has values that are neither true nor false: {unknown[:5]} "
            f"(true: {sorted(true)}, false: {sorted(false)})"
        )
    lookup = np.array([float(k in true) for k in keys] + [missing])  # code -1 picks the trailing `missing`
    return lookup[codes]


def _booleans(frame: pd.DataFrame, column: str, true: set[str], false: set[str]) -> pd.Series:
    return pd.Series(_boolean(frame[column], column, true, false), index=frame.index)


def fit_features(frame: pd.DataFrame, spec: DatasetSpec, config: FeatureConfig | None = None) -> FeatureState:
    """Learn the feature state from training rows (params.yaml `features:` defaults without a config)."""
    config = config or FeatureConfig()
    _require(frame, spec.feature_columns)
    if frame.empty:
        raise FeatureError("cannot fit features on zero rows")
    low_q, high_q = config.clip_quantiles
    safe = _safe_names(spec.feature_columns)
    numeric = []
    for col in spec.columns.numeric:
        values = _numbers(frame, col)
        present = values.dropna()
        lower = float(present.quantile(low_q)) if len(present) else 0.0
        upper = float(present.quantile(high_q)) if len(present) else 0.0
        fill = float(present.clip(lower, upper).median()) if len(present) else 0.0
        numeric.append(NumericState(col, lower, upper, fill, col in spec.nullable, _renamed(col, safe)))
    categorical = []
    for col in spec.columns.categorical:
        counts = frame[col].dropna().value_counts()
        counts = counts.groupby(counts.index.map(str)).sum()  # 1 and "1" are one level
        kept = counts[counts >= config.min_category_count]
        # Most frequent first, ties by name, so the choice is deterministic; columns sorted by name.
        kept = sorted(kept.index, key=lambda level: (-kept[level], level))[: config.max_categories]
        levels = sorted(kept)
        categorical.append(CategoricalState(col, levels, _level_names(safe[col], levels)))
    true, false = set(spec.booleans.true_keys), set(spec.booleans.false_keys)
    boolean = []
    for col in spec.columns.boolean:
        values = _booleans(frame, col, true, false).dropna()
        boolean.append(BooleanState(col, int(values.mean() > 0.5) if len(values) else 0, _renamed(col, safe)))
    state = FeatureState(numeric, categorical, boolean, sorted(true), sorted(false), len(frame))
    return replace(state, columns=_output_columns(state))


def _renamed(column: str, safe: dict[str, str]) -> str | None:
    return None if safe[column] == column else safe[column]


def _prefix(c: CategoricalState) -> str:
    # The level names start with the safe form of the column: `<prefix>__<level>`.
    return c.names[0].rsplit("__", 1)[0] if c.names else _safe_names([c.column])[c.column]


def _output_columns(state: FeatureState) -> list[str]:
    cols: list[str] = []
    for n in state.numeric:
        cols.append(n.feature)
        if n.missing_indicator:
            cols.append(f"{n.feature}__missing__")
    for c in state.categorical:
        cols += [*c.names, f"{_prefix(c)}__other__", f"{_prefix(c)}__missing__"]
    cols += [b.feature for b in state.boolean]
    return cols


def source_columns(state: FeatureState) -> dict[str, str]:
    """The spec column each output column comes from (to read a model's importance per column)."""
    sources: dict[str, str] = {}
    for n in state.numeric:
        sources[n.feature] = n.column
        if n.missing_indicator:
            sources[f"{n.feature}__missing__"] = n.column
    for c in state.categorical:
        for name in [*c.names, f"{_prefix(c)}__other__", f"{_prefix(c)}__missing__"]:
            sources[name] = c.column
    for b in state.boolean:
        sources[b.feature] = b.column
    return sources


def feature_matrix(rows: Rows, state: FeatureState, out: np.ndarray | None = None) -> np.ndarray:
    """Apply a fitted state to rows (a pandas frame, or an Arrow batch or table as the scorer reads
    them): float64, one row per row and one column per `state.columns`, in C order as models read it.

    `out`, a C-order float64 buffer of at least as many rows, is filled and its first rows returned
    (the scorer reuses two: a new 50 MB matrix per chunk costs more in page faults than the features)."""
    _require(rows, state.input_columns)
    n = len(rows)
    position = {name: j for j, name in enumerate(state.columns)}
    if out is None:
        out = np.zeros((n, len(state.columns)), dtype="float64")
    else:
        if out.dtype != np.float64 or not out.flags.c_contiguous or out.shape[0] < n or out.shape[1] != len(position):
            raise ValueError(f"out must be a C-order float64 buffer of >= {n} rows x {len(position)} columns")
        out = out[:n]
        out.fill(0.0)
    for s in state.numeric:
        values = _numeric(_column(rows, s.column), s.column)
        missing = np.isnan(values)
        if s.missing_indicator:
            out[:, position[f"{s.feature}__missing__"]] = missing
        clipped = np.clip(values, s.lower, s.upper)
        clipped[missing] = s.fill
        out[:, position[s.feature]] = clipped
    flat, row_starts = out.reshape(-1), np.arange(n) * len(state.columns)  # a view: one-hot writes go to `out`
    for c in state.categorical:
        raw_codes, texts = _factorized(_column(rows, c.column), str)
        level_column = {level: position[name] for level, name in zip(c.levels, c.names, strict=True)}
        other, missing = position[f"{_prefix(c)}__other__"], position[f"{_prefix(c)}__missing__"]
        # Per distinct value: the output column it sets (a value not kept in training sets `__other__`).
        lookup = np.array([level_column.get(t, other) for t in texts] + [missing], dtype="intp")
        flat[row_starts + lookup[raw_codes]] = 1.0  # code -1 (missing) picks the trailing `__missing__`
    true, false = set(state.true_tokens), set(state.false_tokens)
    for b in state.boolean:
        out[:, position[b.feature]] = _boolean(_column(rows, b.column), b.column, true, false, float(b.fill))
    return out


def transform(frame: pd.DataFrame, state: FeatureState) -> pd.DataFrame:
    """`feature_matrix` as a float64 frame with `state.columns`, same index as `frame`."""
    return pd.DataFrame(feature_matrix(frame, state), index=frame.index, columns=state.columns, copy=False)


def encode_target(frame: pd.DataFrame, spec: DatasetSpec) -> pd.Series:
    """The target as 1 (positive label) / 0 (negative label); anything else is an error."""
    target = spec.target
    _require(frame, [target.column])
    text = as_text(frame[target.column])
    unknown = text[~text.isin([target.positive, target.negative])]
    if len(unknown):
        raise FeatureError(
            f"target column {target.column!r} has values other than {target.positive!r} / {target.negative!r}: "
            f"{unknown.unique()[:5].tolist()}"
        )
    return (text == target.positive).astype("int8").rename("label")


def feature_table(frame: pd.DataFrame, state: FeatureState, spec: DatasetSpec, *, with_target: bool) -> pd.DataFrame:
    """Id (and timestamp) columns, the features, and the 0/1 `label` when `with_target`."""
    keys = [spec.id.column] + ([spec.timestamp.column] if spec.timestamp else [])
    _require(frame, keys)
    clash = set(state.columns) & {*keys, "label"}
    if clash:
        raise FeatureError(f"feature names {sorted(clash)} clash with the id, timestamp or label column")
    parts = [frame[keys], transform(frame, state)]
    if with_target:
        parts.append(encode_target(frame, spec))
    return pd.concat(parts, axis=1).reset_index(drop=True)
