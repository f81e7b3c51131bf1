"""Dagster metadata built from tables and images: schema, profile and plots, shown on the asset's page in the UI."""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from ml.plots import png_markdown
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


def markdown_images(folder: Path, first: Sequence[str] = ()) -> str:
    """The PNG files in `folder` (those named in `first` first) as markdown, which the Dagster UI renders."""
    rank = {name: i for i, name in enumerate(first)}
    paths = sorted(folder.glob("*.png"), key=lambda p: (rank.get(p.stem, len(rank)), p.stem))
    return png_markdown({path.stem: path.read_bytes() for path in paths})


def ranked_table(values: Mapping[str, float], name: str, value: str) -> dg.TableMetadataValue:
    """A two-column table (e.g. feature and importance), largest value first."""
    ranked = sorted(values.items(), key=lambda kv: -abs(kv[1]))
    return dg.MetadataValue.table(
        records=[dg.TableRecord({name: key, value: float(v)}) for key, v in ranked],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, "string"), dg.TableColumn(value, "float")]),
    )
