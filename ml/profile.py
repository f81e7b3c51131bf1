"""A per-column profile of a table: what a person checks first when data changes."""

from __future__ import annotations

import pandas as pd


def column_profile(frame: pd.DataFrame, top: int = 3) -> list[dict[str, str | int]]:
    """One row per column: type, missing count, distinct count, and range or most frequent values."""
    rows = []
    for name, values in frame.items():
        present = values.dropna()
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            summary = f"{present.min():g} .. {present.max():g}" if len(present) else ""
        else:
            counts = present.astype(str).value_counts().head(top)
            summary = ", ".join(f"{value} ({count})" for value, count in counts.items())
        rows.append(
            {
                "column": str(name),
                "type": str(values.dtype),
                "missing": int(values.isna().sum()),
                "distinct": int(present.nunique()),
                "range_or_top_values": summary,
            }
        )
    return rows
