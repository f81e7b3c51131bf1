"""Ids are compared as text: the integer 7 and the text "7" are one id, wherever a file comes from.

The import reads the source's id column as text; a day's snapshot, its labels, its predictions and the
request log may hold integer ids (a Parquet file written by another tool often does). Every place
that joins or writes ids takes them through these functions, so a join never misses because one side
holds integers and the other text. Ids of other types (floats, dates) are refused with a message that
says what to do: a float id such as 7.0 has no single text form.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


class IdTypeError(ValueError):
    """An id column holds values that are neither text nor integers; the message names the column."""


def _refuse(column: str, kind: str, where: str) -> IdTypeError:
    return IdTypeError(
        f"{where}: id column {column!r} holds {kind} values; ids must be text or integers (compared as text): "
        "write them as text or as whole numbers"
    )


def arrow_ids_as_text(ids: pa.Array | pa.ChunkedArray, column: str, where: str) -> pa.Array | pa.ChunkedArray:
    """An Arrow id column (array or chunked array) as text: integers in their decimal form, nulls kept."""
    if pa.types.is_dictionary(ids.type):
        ids = ids.cast(ids.type.value_type)
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        return ids.cast(pa.string())
    if pa.types.is_integer(ids.type):
        return pc.cast(ids, pa.string())
    raise _refuse(column, str(ids.type), where)


def ids_as_text(frame: pd.DataFrame, column: str, where: str) -> pd.DataFrame:
    """The frame with its id column as text (integers in their decimal form, missing values kept)."""
    values = frame[column]
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_float_dtype(values):
        raise _refuse(column, str(values.dtype), where)
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_string_dtype(values) or values.dtype == object:
        if values.dtype == object:
            present = values.dropna()
            odd = present[~present.map(lambda v: isinstance(v, str | int | np.integer) and not isinstance(v, bool))]
            if len(odd):
                raise _refuse(column, type(odd.iloc[0]).__name__, where)
        text = values.astype(object)
        return frame.assign(**{column: text.where(text.isna(), text.map(str))})
    raise _refuse(column, str(values.dtype), where)
