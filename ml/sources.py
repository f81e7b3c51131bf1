"""Reading a data set's source file (CSV or Parquet, local path or fsspec URI) as the spec describes.

Only what cannot be read at all is an error here (missing, empty, undecodable, unparsable file).
What can be read but is wrong (missing columns, bad values, too few rows) is left to the data checks,
which report it in the Dagster UI.
"""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ml.io import decimals_as_float64, resolve
from ml.spec import DatasetSpec


class SourceError(ValueError):
    """A source file cannot be read; the message names the file and the problem."""


def as_text(series: pd.Series) -> pd.Series:
    """Values as Python strings, missing values kept missing."""
    values = series.astype(object)
    return values.where(values.isna(), values.map(str)).replace({None: np.nan})


def as_datetime(series: pd.Series) -> pd.Series:
    """Parsed timestamps; a column that does not parse whole is returned unchanged for the checks to report."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    for fmt in ("ISO8601", "mixed"):  # ISO 8601 in any precision first; then element by element
        try:
            return pd.to_datetime(series, errors="raise", format=fmt)
        except (ValueError, TypeError, OverflowError):
            continue
    return series


def read_frame(
    uri: str,
    fmt: str,
    *,
    encoding: str = "utf-8",
    text_columns: list[str] = (),
    datetime_columns: list[str] = (),
    numeric_columns: list[str] = (),
) -> pd.DataFrame:
    """Read one CSV or Parquet file; `text_columns` come back as text, `datetime_columns` parsed if they can be,
    and Parquet decimals among `numeric_columns` as float64 (ml/io.py decimals_as_float64)."""
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise SourceError(f"source file not found: {uri}")
    if fs.isdir(path):
        raise SourceError(f"source {uri} is a folder, not a file")
    if fs.size(path) == 0:
        raise SourceError(f"source file {uri} is empty (0 bytes)")
    frame = _read_csv(uri, encoding, list(text_columns)) if fmt == "csv" else _read_parquet(uri, numeric_columns)
    for col in text_columns:
        if col in frame.columns:
            frame[col] = as_text(frame[col])
    for col in datetime_columns:
        if col in frame.columns:
            frame[col] = as_datetime(frame[col])
    return frame


def _read_csv(uri: str, encoding: str, text_columns: list[str]) -> pd.DataFrame:
    try:
        # Text columns are read as text so that ids like "007" and labels like "1" keep their form.
        return pd.read_csv(uri, encoding=encoding, dtype={c: str for c in text_columns})
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        raise SourceError(
            f"source file {uri} is not valid {encoding} text (byte 0x{byte} cannot be decoded); "
            "re-encode the file or set dataset.source.encoding"
        ) from None
    except pd.errors.EmptyDataError:
        raise SourceError(f"source file {uri} has no header row (no columns to read)") from None
    except pd.errors.ParserError as error:
        raise SourceError(f"source file {uri} is not well-formed CSV: {error}") from None
    except LookupError:
        raise SourceError(f"dataset.source.encoding: unknown text encoding {encoding!r}") from None


def _read_parquet(uri: str, numeric_columns: list[str]) -> pd.DataFrame:
    try:
        with fsspec.open(uri, "rb") as handle:
            table = pq.read_table(handle)
    except Exception as error:  # pyarrow raises several types for a corrupt or non-Parquet file
        raise SourceError(f"source file {uri} is not a readable Parquet file: {error}") from None
    return decimals_as_float64(table, numeric_columns).to_pandas()


def read_source(spec: DatasetSpec, root: str | Path) -> pd.DataFrame:
    """Read the spec's source file; relative paths are taken from the project `root`."""
    uri = resolve(spec.source.uri, root)
    return read_frame(
        uri,
        spec.source.resolved_format,
        encoding=spec.source.encoding,
        text_columns=spec.text_columns,
        datetime_columns=[spec.timestamp.column] if spec.timestamp else [],
        numeric_columns=spec.columns.numeric,
    )
