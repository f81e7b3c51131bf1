"""Dagster metadata built from tables: schema and profile, shown on the asset's page in the UI."""

from collections.abc import Callable

import dagster as dg
import pandas as pd

from ml.profile import column_profile


def column_schema(frame: pd.DataFrame, describe: Callable[[str], str] | None = None) -> dg.TableSchema:
    """Column names and types; with `describe`, a short description of each column too."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(str(c), str(t), description=describe(str(c)) if describe else None)
            for c, t in frame.dtypes.items()
        ]
    )


def profile_table(frame: pd.DataFrame) -> dg.TableMetadataValue:
    rows = column_profile(frame)
    columns = [
        dg.TableColumn("column"),
        dg.TableColumn("type"),
        dg.TableColumn("missing", "int"),
        dg.TableColumn("distinct", "int"),
        dg.TableColumn("range_or_top_values"),
    ]
    return dg.MetadataValue.table(records=[dg.TableRecord(row) for row in rows], schema=dg.TableSchema(columns=columns))
