"""Draft the `dataset:` section of params.yaml from a CSV or Parquet file, saying what was guessed and why.

    python -m ml.spec_draft data/source/credit.csv --target Status --out dataset.yaml
    python -m ml.spec_draft data/source/credit.csv --target Status --into-params params.yaml

Column kinds come from pandas' own type inference (`pandas.api.types.infer_dtype`, and
`pandas.to_datetime` for timestamps): a bool column, 0/1 numbers or yes/no-like text are boolean; other
numbers numeric; text categorical. Numeric columns get a range around the values seen with a margin
(a tenth of the span, never below 0 for a column without negatives); categorical columns with at most
MAX_CLOSED_CATEGORIES levels get their levels as the allowed values; columns with missing values are
nullable. The id is the column given, else a unique, complete column named like an id or holding the row
numbers, else generated row numbers; the timestamp the column given, else one whose values all read as
dates. The target must hold two labels; the positive one is the label given, else the minority.

The section is written to a new file (`--out`), or replaces the `dataset:` section of a params file
(`--into-params`, the previous file kept beside it as `<file>.bak`); an existing `--out` file is never
overwritten without `--force`. Before anything is written the drafted section is validated the way
params.yaml is loaded (ml/params.py), so what is written loads as is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ml import io
from ml.params import ParamsError, parse_params
from ml.sources import SourceError, as_text, read_frame
from ml.spec import BooleanTokens, SourceSpec, SpecError, token_key

MAX_CLOSED_CATEGORIES = 50  # more levels than this: no closed list (new levels would fail the checks)
FREE_TEXT_SHARE = 0.5  # a text column with more distinct values than this share of rows is free text
RANGE_MARGIN = 0.1  # of the span seen, added below and above a numeric column's range
ID_NAME = re.compile(r"(^|[^a-z])(id|key|uuid|rownames)$|[a-z](_id|Id|ID)$")
DEFAULT_TOKENS = BooleanTokens()


class DraftError(ValueError):
    """The file cannot be drafted from as asked; the message names the column or option at fault."""


@dataclass
class Draft:
    """The drafted section and, per column, what was guessed and why."""

    section: dict[str, Any]
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (column, guess and why)
    left_out: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        width = max((len(c) for c, _ in self.reasons), default=0)
        return [f"{column.ljust(width)}  {reason}" for column, reason in self.reasons]


def read_source(uri: str, fmt: str, encoding: str = "utf-8") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The file as pandas infers it (for kinds and ranges) and as the import reads text (every column as text).

    A Parquet decimal column with digits after the point (money, as warehouses export it) is read as the
    import reads a numeric column, as float64: it is drafted numeric, not left out as free text."""
    fractional = [] if fmt == "csv" else _fractional_decimals(uri)
    inferred = read_frame(uri, fmt, encoding=encoding, numeric_columns=fractional)
    if fmt == "csv":
        # The import reads ids, labels and categories as text as written ("007" stays "007").
        text = read_frame(uri, fmt, encoding=encoding, text_columns=list(inferred.columns))
    else:
        text = inferred.apply(as_text)
    return inferred, text


def _fractional_decimals(uri: str) -> list[str]:
    try:
        with fsspec.open(uri, "rb") as handle:
            schema = pq.read_schema(handle)
    except Exception:  # read_frame names a file it cannot read
        return []
    return [f.name for f in schema if pa.types.is_decimal(f.type) and f.type.scale > 0]


def _nice(value: float, step: float, up: bool) -> float | int:
    rounded = (math.ceil if up else math.floor)(value / step) * step
    return int(rounded) if float(rounded).is_integer() else round(rounded, 10)


def numeric_range(values: pd.Series) -> dict[str, float | int]:
    """The values' range widened by RANGE_MARGIN of its span on each side, rounded outwards."""
    low, high = float(values.min()), float(values.max())
    margin = (high - low) * RANGE_MARGIN or max(abs(high) * RANGE_MARGIN, 1.0)
    step = 10 ** math.floor(math.log10(margin))
    lower = _nice(low - margin, step, up=False)
    if low >= 0 and lower < 0:
        lower = 0  # a column with no negative value (a count, an amount) stays non-negative
    return {"min": lower, "max": _nice(high + margin, step, up=True)}


def boolean_tokens(inferred: pd.Series, text: pd.Series) -> list[str] | None:
    """The column's distinct values as boolean token keys when it is boolean-like, else None."""
    present = inferred.dropna()
    if present.empty:
        return None
    if pd.api.types.is_bool_dtype(present):
        return sorted({token_key(v) for v in present.unique()})
    if pd.api.types.is_numeric_dtype(present):
        keys = {token_key(v) for v in present.unique()}
        return sorted(keys) if keys <= {"0", "1"} and len(keys) == 2 else None
    keys = set(text.dropna().unique())
    known = DEFAULT_TOKENS.true_keys | DEFAULT_TOKENS.false_keys
    if len(keys) == 2 and keys <= known and len(keys & DEFAULT_TOKENS.true_keys) == 1:
        return sorted(keys)
    return None


def _as_dates(series: pd.Series) -> bool:
    """Whether every value of a text column reads as a date or time (numbers do not count)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    present = series.dropna()
    if present.empty or pd.api.types.is_numeric_dtype(present) or pd.api.types.infer_dtype(present) != "string":
        return False
    if not present.str.contains(r"\d[-/:.]\d|\d{4}-\d", regex=True).all():
        return False  # text like "Month-to-month" must not pass for a date
    try:
        pd.to_datetime(present, errors="raise", format="mixed")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _row_numbers(series: pd.Series) -> bool:
    present = series.dropna()
    if len(present) != len(series) or not pd.api.types.is_integer_dtype(present):
        return False
    ordered = present.sort_values().to_numpy()
    return bool(len(ordered)) and bool((ordered == range(ordered[0], ordered[0] + len(ordered))).all())


def id_candidates(inferred: pd.DataFrame, text: pd.DataFrame, exclude: set[str]) -> list[tuple[str, str]]:
    """Columns that can be the id (unique, complete, text or integers), best first, each with why."""
    found = []
    for column in inferred.columns:
        if column in exclude:
            continue
        values = inferred[column]
        kind = pd.api.types.infer_dtype(values.dropna())
        if values.isna().any() or kind not in ("string", "integer") or not text[column].is_unique:
            continue
        if ID_NAME.search(column) or column.lower() == "id":
            found.append((0, column, "unique and complete, named like an id"))
        elif _row_numbers(values):
            found.append((1, column, "unique and complete, the row numbers"))
    return [(column, why) for _, column, why in sorted(found, key=lambda f: f[0])]


def _free_name(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _positive(labels: list[str], counts: pd.Series, chosen: str | None, target: str) -> tuple[str, str]:
    if chosen is not None:
        if chosen not in labels:
            raise DraftError(f"--positive {chosen!r} is not a label of {target!r} (labels: {labels})")
        return chosen, "as given"
    minority = counts.idxmin() if counts.min() != counts.max() else sorted(labels)[-1]
    return str(minority), "the minority" if counts.min() != counts.max() else "the classes are even: the last by name"


def draft(
    inferred: pd.DataFrame,
    text: pd.DataFrame,
    *,
    uri: str,
    target: str,
    name: str,
    fmt: str = "auto",
    positive: str | None = None,
    id_column: str | None = None,
    timestamp: str | None = None,
    no_timestamp: bool = False,
) -> Draft:
    """The `dataset:` section for the rows (as inferred and as text), with the reasons of every guess."""
    columns = list(inferred.columns)
    for option, column in (("--target", target), ("--id", id_column), ("--timestamp", timestamp)):
        if column is not None and column not in columns:
            raise DraftError(f"{option} {column!r} is not a column of {uri} (columns: {', '.join(columns)})")
    rows = len(inferred)
    if rows == 0:
        raise DraftError(f"{uri} has no rows to draft a spec from")
    result = Draft(section={})

    # The target's two labels, as the import reads them (text).
    labels_seen = text[target]
    if labels_seen.isna().any():
        raise DraftError(
            f"target {target!r} is missing on {int(labels_seen.isna().sum())} of {rows} rows; "
            "drop those rows from the file first (a training row needs its label)"
        )
    counts = labels_seen.value_counts()
    labels = sorted(counts.index)
    if len(labels) != 2:
        shown = labels[:10]
        raise DraftError(
            f"target {target!r} has {len(labels)} distinct values {shown}; a binary target needs exactly two: "
            "map them to two labels in the file first"
        )
    pos, why = _positive(labels, counts, positive, target)
    neg = next(label for label in labels if label != pos)
    result.reasons.append(
        (
            target,
            f"target: positive {pos!r} ({why}, {counts[pos] / rows:.1%} of rows; --positive to choose), negative {neg!r}",
        )
    )

    # The timestamp: given, else the first column whose values all read as dates.
    stamp = timestamp
    if stamp is None and not no_timestamp:
        dates = [c for c in columns if c != target and _as_dates(inferred[c])]
        stamp = dates[0] if dates else None
        if stamp:
            others = f"; other candidates: {', '.join(dates[1:])}" if dates[1:] else ""
            result.reasons.append(
                (stamp, f"timestamp: every value reads as a date{others} (--timestamp / --no-timestamp)")
            )
    elif stamp is not None:
        result.reasons.append((stamp, "timestamp: as given"))

    # The id: given, else the best candidate, else generated row numbers.
    generated = False
    if id_column is not None:
        if inferred[id_column].isna().any() or not text[id_column].is_unique:
            raise DraftError(f"--id {id_column!r} is not unique and complete: an id names one row")
        if pd.api.types.infer_dtype(inferred[id_column]) not in ("string", "integer"):
            raise DraftError(
                f"--id {id_column!r} holds {inferred[id_column].dtype} values; ids must be text or integers"
            )
        result.reasons.append((id_column, "id: as given"))
    else:
        candidates = id_candidates(inferred, text, {target, *([stamp] if stamp else [])})
        if candidates:
            id_column, why = candidates[0]
            others = f"; other candidates: {', '.join(c for c, _ in candidates[1:])}" if candidates[1:] else ""
            result.reasons.append((id_column, f"id: {why}{others} (--id to choose)"))
        else:
            id_column, generated = _free_name("row_id", set(columns)), True
            result.reasons.append(
                (id_column, "id: generated row numbers (no unique, complete column named like an id; --id to choose)")
            )

    numeric, categorical, boolean, nullable = [], [], [], []
    ranges, categories, tokens = {}, {}, set()
    for column in columns:
        if column in (target, id_column, stamp):
            continue
        values, as_text_values = inferred[column], text[column]
        present = values.dropna()
        missing = f", nullable ({int(values.isna().sum())} missing)" if values.isna().any() else ""
        if present.empty:
            result.left_out.append(column)
            result.reasons.append((column, "left out: no values at all"))
            continue
        keys = boolean_tokens(values, as_text_values)
        kind = pd.api.types.infer_dtype(present)
        if keys is not None:
            boolean.append(column)
            tokens |= set(keys)
            result.reasons.append((column, f"boolean: two values {keys}{missing}"))
        elif pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
            numeric.append(column)
            ranges[column] = numeric_range(present)
            bounds = ranges[column]
            result.reasons.append(
                (
                    column,
                    f"numeric ({kind}): seen {present.min():g} .. {present.max():g}, allowed "
                    f"{bounds['min']} .. {bounds['max']}{missing}",
                )
            )
        elif pd.api.types.is_datetime64_any_dtype(present) or _as_dates(values):
            result.left_out.append(column)
            result.reasons.append((column, "left out: dates, and not the timestamp (--timestamp to choose it)"))
            continue
        else:
            levels = sorted(as_text_values.dropna().unique())
            if (
                len(levels) > max(MAX_CLOSED_CATEGORIES, FREE_TEXT_SHARE * rows)
                and len(levels) > FREE_TEXT_SHARE * rows
            ):
                result.left_out.append(column)
                result.reasons.append((column, f"left out: free text ({len(levels)} distinct values in {rows} rows)"))
                continue
            categorical.append(column)
            if len(levels) <= MAX_CLOSED_CATEGORIES:
                categories[column] = levels
                closed = f"{len(levels)} levels, listed as the allowed values"
            else:
                closed = f"{len(levels)} levels: too many to list, any value allowed"
            result.reasons.append((column, f"categorical ({kind}): {closed}{missing}"))
        if values.isna().any():
            nullable.append(column)

    if not (numeric or categorical or boolean):
        raise DraftError(f"{uri}: no feature columns are left besides the target, id and timestamp")
    true_keys = sorted(tokens & DEFAULT_TOKENS.true_keys)
    false_keys = sorted(tokens & DEFAULT_TOKENS.false_keys)
    section: dict[str, Any] = {
        "name": name,
        "source": {"uri": uri, "format": fmt},
        "target": {"column": target, "positive": pos, "negative": neg},
        "id": {"column": id_column, **({"generate": "row_number", "prefix": "R"} if generated else {})},
        "timestamp": {"column": stamp} if stamp else None,
        "columns": {"numeric": numeric, "categorical": categorical, "boolean": boolean},
        "ranges": ranges,
        "categories": categories,
        "nullable": nullable,
        "booleans": {
            "true_values": [int(k) if k.isdigit() else k for k in true_keys] or list(DEFAULT_TOKENS.true_values),
            "false_values": [int(k) if k.isdigit() else k for k in false_keys] or list(DEFAULT_TOKENS.false_values),
        },
        "rows": {"min": max(1, rows // 10), "max": rows * 1000},
        "unexpected_columns": "ignore" if result.left_out else "reject",
    }
    result.reasons.append(
        (
            "(rows)",
            f"rows: {section['rows']['min']} .. {section['rows']['max']} (a tenth to a thousand times the {rows} seen)",
        )
    )
    if result.left_out:
        result.reasons.append(("(others)", "unexpected_columns: ignore, so the columns left out are kept unused"))
    result.section = section
    return result


def render(result: Draft, source: str) -> str:
    """The section as YAML, with what was guessed and why as comments inside it."""
    body = yaml.safe_dump({"dataset": result.section}, sort_keys=False, default_flow_style=None, width=110)
    head, _, rest = body.partition("\n")
    notes = [f"  # Drafted from {source} by `python -m ml.spec_draft` on {dt.date.today()}: check each guess."]
    notes += [f"  #   {line}" for line in result.lines()]
    return "\n".join([head, *notes, rest])


def validate(section_text: str, params_document: dict[str, Any], origin: str) -> None:
    """Load the drafted section inside the params document exactly as params.yaml is loaded."""
    drafted = yaml.safe_load(section_text)["dataset"]
    document = {**params_document, "dataset": drafted}
    document.setdefault("daily", {"start_date": str(dt.date.today())})
    parse_params(document, origin=origin)


def replace_section(params_text: str, section_text: str, origin: str) -> str:
    """params.yaml's text with its top-level `dataset:` block replaced, every other line kept as written."""
    lines = params_text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"dataset:\s*(#.*)?$", line)), None)
    if start is None:
        raise DraftError(f"{origin} has no top-level `dataset:` section to replace; use --out and paste it")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()), len(lines))
    return "".join([*lines[:start], section_text.rstrip("\n") + "\n", *lines[end:]])


def _name(path: str) -> str:
    stem = Path(path.split("?")[0]).name.split(".")[0]
    cleaned = re.sub(r"[^A-Za-z0-9_\-]+", "_", stem).strip("_")
    return cleaned or "dataset"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.spec_draft", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the CSV or Parquet file (a project path or an fsspec URI)")
    parser.add_argument("--target", required=True, help="the label column")
    parser.add_argument("--positive", help="the positive label (default: the minority label)")
    parser.add_argument("--id", dest="id_column", help="the id column (default: guessed, else generated row numbers)")
    stamp = parser.add_mutually_exclusive_group()
    stamp.add_argument("--timestamp", help="the event-time column (default: a column whose values are all dates)")
    stamp.add_argument("--no-timestamp", action="store_true", help="no timestamp, whatever reads as dates")
    parser.add_argument("--name", help="dataset.name (default: the file's name)")
    parser.add_argument("--format", default="auto", choices=["auto", "csv", "parquet"])
    parser.add_argument("--encoding", default="utf-8")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="write the section to this new file (refused if it exists, unless --force)")
    where.add_argument(
        "--into-params",
        metavar="PARAMS",
        help="replace the dataset: section of this params file (the previous file is kept as PARAMS.bak)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    args = parser.parse_args(argv)
    try:
        fmt = SourceSpec(uri=args.source, format=args.format).resolved_format
        inferred, text = read_source(io.resolve(args.source), fmt, args.encoding)
        result = draft(
            inferred,
            text,
            uri=args.source,
            target=args.target,
            name=args.name or _name(args.source),
            fmt=args.format,
            positive=args.positive,
            id_column=args.id_column,
            timestamp=args.timestamp,
            no_timestamp=args.no_timestamp,
        )
        section = render(result, args.source)
        if args.into_params:
            params_path = Path(args.into_params)
            params_text = params_path.read_text(encoding="utf-8")
            new_text = replace_section(params_text, section, str(params_path))
            validate(section, yaml.safe_load(new_text), str(params_path))
        else:
            out = Path(args.out)
            if out.exists() and not args.force:
                raise DraftError(f"{out} exists; choose another --out, or --force to overwrite it")
            beside = Path("params.yaml")
            document = yaml.safe_load(beside.read_text(encoding="utf-8")) if beside.exists() else {}
            validate(section, document or {}, str(out))
    except (DraftError, SourceError, SpecError, ParamsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"drafted dataset {result.section['name']!r} from {args.source} ({len(inferred)} rows, {inferred.shape[1]} columns):"
    )
    for line in result.lines():
        print(f"  {line}")
    if args.into_params:
        shutil.copy2(params_path, f"{params_path}.bak")
        with io.atomic_output(str(params_path.resolve())) as tmp:
            tmp.write_text(new_text, encoding="utf-8")
        print(f"replaced the dataset: section of {params_path} (the previous file: {params_path}.bak)")
    else:
        with io.atomic_output(str(out.resolve())) as tmp:
            tmp.write_text(section, encoding="utf-8")
        print(f"wrote {out}: paste its dataset: section into params.yaml, or draft with --into-params params.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
