"""Run an expectation suite on a DataFrame or a Parquet file and say, per data check, what failed and on which values.

Rows are validated a batch at a time (CHECK_BATCH_ROWS), so a day of millions of rows is checked in
bounded memory: GX runs the row-level expectations on each batch and their unexpected counts are
summed (exact); the row count and the uniqueness of ids span batches and are counted across them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from data_checks.groups import CHECK_NAMES
from data_checks.suite import ID_TYPES, NUMERIC_TYPES, TIMESTAMP_TYPES, gx
from ml.io import decimals_as_float64

SAMPLE_SIZE = 5
PARTIAL = 20  # unexpected values kept per expectation, for examples
CHECK_BATCH_ROWS = 100_000  # rows GX validates at once: about 2.5 s of fixed cost per batch
# Expectations over the whole table, counted across batches here rather than per batch by GX.
SPANNING = {"expect_table_row_count_to_be_between", "expect_column_values_to_be_unique"}
# Row-level expectations whose unexpected counts add up over batches.
COUNTED = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
}


@dataclass(frozen=True)
class FailedExpectation:
    check: str
    expectation: str
    column: str | None
    problem: str
    examples: list[str]

    def line(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        examples = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{self.expectation}{where}: {self.problem}{examples}"


@dataclass
class CheckOutcome:
    name: str
    evaluated: int = 0
    failures: list[FailedExpectation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class ValidationReport:
    suite: str
    rows: int
    checks: dict[str, CheckOutcome]

    @property
    def success(self) -> bool:
        return all(c.passed for c in self.checks.values())

    @property
    def failures(self) -> list[FailedExpectation]:
        return [f for c in self.checks.values() for f in c.failures]

    def describe(self) -> str:
        if self.success:
            return f"{self.suite}: all {sum(c.evaluated for c in self.checks.values())} expectations passed on {self.rows} rows"
        return f"{self.suite}: {len(self.failures)} failed expectation(s): " + "; ".join(
            f.line() for f in self.failures
        )


def _fmt(value: Any) -> str:
    return "null" if value is None or (isinstance(value, float) and pd.isna(value)) else repr(value)


def _examples(values: list[Any]) -> list[str]:
    return list(dict.fromkeys(_fmt(v) for v in values))[:SAMPLE_SIZE]


def _unparsable(frame: pd.DataFrame, column: str, expected: list[str]) -> list[str]:
    """Values of a mistyped column that are not numbers (or not timestamps, for a timestamp column)."""
    values = frame[column]
    if expected == TIMESTAMP_TYPES:
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    else:
        parsed = pd.to_numeric(values, errors="coerce")
    bad = values[parsed.isna() & values.notna()]
    return [repr(v) for v in bad.unique()[:SAMPLE_SIZE]]


def _explain(kind: str, kwargs: dict, result: dict, frame: pd.DataFrame, id_column: str) -> tuple[str, list[str]]:
    """A human sentence for one failed expectation, and a few offending values."""
    column = kwargs.get("column")
    count = result.get("unexpected_count")
    partial = result.get("partial_unexpected_list") or []
    if kind == "expect_column_to_exist":
        return "column is missing", []
    if kind == "expect_table_columns_to_match_set":
        mismatch = (result.get("details") or {}).get("mismatched") or {}
        parts = []
        if mismatch.get("missing"):
            parts.append(f"missing columns {sorted(mismatch['missing'])}")
        if mismatch.get("unexpected"):
            parts.append(f"unexpected columns {sorted(mismatch['unexpected'])} (dataset.unexpected_columns: reject)")
        return "; ".join(parts) or "columns differ from the spec", []
    if kind == "expect_column_values_to_be_in_type_list":
        examples = _unparsable(frame, column, kwargs["type_list"]) if column in frame else []
        observed = _type_name(frame[column]) if column in frame else result.get("observed_value")
        if kwargs["type_list"] == ID_TYPES:
            return f"type is {observed}; ids must be text or integers (compared as text)", examples
        return f"type is {observed}, expected one of {kwargs['type_list'][:4]}...", examples
    if kind == "expect_column_values_to_not_be_null":
        ids = frame.loc[frame[column].isna(), id_column].head(SAMPLE_SIZE).tolist() if id_column in frame else []
        return f"{count} missing value(s)", [f"{id_column}={i}" for i in ids]
    if kind == "expect_column_values_to_be_between":
        return f"{count} value(s) outside [{kwargs.get('min_value')}, {kwargs.get('max_value')}]", _examples(partial)
    if kind == "expect_column_values_to_be_in_set":
        return f"{count} value(s) not in the allowed set {kwargs['value_set'][:8]}", _examples(partial)
    if kind == "expect_column_values_to_be_unique":
        return f"{count} row(s) share an id with another row", _examples(partial)
    if kind == "expect_table_row_count_to_be_between":
        return (
            f"{result.get('observed_value')} rows, expected between {kwargs.get('min_value')} and {kwargs.get('max_value')}",
            [],
        )
    return f"failed: {result}", _examples(partial)


def _type_name(values: pd.Series) -> str:
    """The column's pandas type; Parquet decimals, which pandas holds as Python objects, are named so."""
    if values.dtype == object:
        present = values.dropna()
        if len(present) and isinstance(present.iloc[0], Decimal):
            return "decimal (Python Decimal objects)"
    return str(values.dtype)


def _exception_message(info: dict) -> str | None:
    """GX reports an exception either at the top level or per metric that raised it."""
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error").splitlines()[0]
    return None


def validate_frame(frame: pd.DataFrame, suite: gx.ExpectationSuite, *, id_column: str) -> ValidationReport:
    """Validate a DataFrame, CHECK_BATCH_ROWS rows at a time (GX's own working memory stays bounded)."""

    def batches(columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        for start in range(0, len(frame), CHECK_BATCH_ROWS):
            chunk = _without_categories(frame.iloc[start : start + CHECK_BATCH_ROWS])
            yield chunk if columns is None else chunk[columns]

    return validate_batches(batches, _without_categories(frame.iloc[:0]), suite, id_column=id_column)


def validate_parquet(
    parquet: pq.ParquetFile, suite: gx.ExpectationSuite, *, id_column: str, batch_rows: int = CHECK_BATCH_ROWS
) -> ValidationReport:
    """Validate a Parquet file batch by batch: memory is bounded by `batch_rows` and the file's row groups.

    A column the suite expects numeric that the file holds as decimals (how warehouses export money) is
    checked as float64, as it is scored and trained on (ml/io.py decimals_as_float64)."""
    numeric = _numeric_columns(suite)

    def batches(columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield _without_categories(decimals_as_float64(batch, numeric).to_pandas())

    template = _without_categories(decimals_as_float64(parquet.schema_arrow.empty_table(), numeric).to_pandas())
    return validate_batches(batches, template, suite, id_column=id_column)


def _numeric_columns(suite: gx.ExpectationSuite) -> list[str]:
    return [
        e.configuration.kwargs["column"]
        for e in suite.expectations
        if e.expectation_type == "expect_column_values_to_be_in_type_list"
        and e.configuration.kwargs["type_list"] == NUMERIC_TYPES
    ]


def _without_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """A dictionary column (pandas writes `category` so) as its plain values: GX's type check cannot accept the
    category dtype whatever its type list says, so a column of allowed values failed as "type is category".
    A UTC timestamp likewise, as its naive UTC values."""
    plain = {}
    for column in frame.columns:
        dtype = frame[column].dtype
        if isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC":
            # GX's type check refuses an aware dtype whatever its type list says: UTC (the zone the suite lists
            # for a timestamp) is checked as its naive UTC values. Another zone keeps its type and is named.
            frame = frame.assign(**{column: frame[column].dt.tz_localize(None)})
            continue
        if isinstance(dtype, pd.CategoricalDtype):
            values = frame[column].cat.categories.dtype
            # Integers or booleans with a gap cannot keep their type: as floats, the gap is a null to check.
            gap = values.kind in "iub" and bool(frame[column].isna().any())
            plain[column] = "float64" if gap else values
    return frame.astype(plain) if plain else frame


@dataclass
class _Tally:
    """One expectation's outcome summed over the batches: counts add up, examples come from the first batches."""

    kind: str
    kwargs: dict
    check: str
    success: bool = True
    count: int = 0
    partial: list = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    problem: str = ""
    error: bool = False  # GX could not evaluate it: its problem says why, there are no counts


def _key(config) -> tuple[str, str]:
    return config.type, repr(sorted((k, v) for k, v in config.kwargs.items() if k != "batch_id"))


def validate_batches(
    batches: Callable[..., Iterator[pd.DataFrame]],
    template: pd.DataFrame,
    suite: gx.ExpectationSuite,
    *,
    id_column: str,
) -> ValidationReport:
    """Validate the rows that `batches()` yields (`batches(columns)`: only those columns), one batch at a time.

    Every row-level expectation runs in GX on each batch and its unexpected counts are summed, so
    the counts are exact; the row count and the id's uniqueness span batches and are counted here.
    `template` is an empty frame with the rows' columns and types (what an empty file is checked as).
    """
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    whole = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
    )
    spanning = [e for e in suite.expectations if e.expectation_type in SPANNING]
    per_batch = gx.ExpectationSuite(
        name=suite.name, expectations=[e for e in suite.expectations if e.expectation_type not in SPANNING]
    )
    tallies: dict[tuple[str, str], _Tally] = {}
    rows, seen = 0, False
    for frame in batches():
        seen = True
        rows += len(frame)
        _tally_batch(whole, per_batch, frame, id_column, tallies)
    if not seen:  # no rows at all: the schema is still checked, on the file's columns
        _tally_batch(whole, per_batch, template, id_column, tallies)
    columns = set(template.columns)
    for expectation in spanning:
        config = expectation.configuration
        tally = _Tally(config.type, {k: v for k, v in config.kwargs.items() if k != "batch_id"}, config.meta["check"])
        if config.type == "expect_table_row_count_to_be_between":
            low, high = tally.kwargs.get("min_value"), tally.kwargs.get("max_value")
            tally.success = (low is None or rows >= low) and (high is None or rows <= high)
            tally.problem, _ = _explain(tally.kind, tally.kwargs, {"observed_value": rows}, template, id_column)
        elif tally.kwargs["column"] in columns:
            duplicated = _duplicated_values(batches, tally.kwargs["column"])
            tally.success, tally.count = not duplicated, sum(duplicated.values())
            tally.partial = [v for v, n in duplicated.items() for _ in range(n)][:PARTIAL]
        else:
            continue  # the missing column is reported once, by expect_column_to_exist
        tallies[_key(config)] = tally
    checks = {name: CheckOutcome(name) for name in CHECK_NAMES}
    for expectation in suite.expectations:
        tally = tallies.get(_key(expectation.configuration))
        check = checks[expectation.configuration.meta["check"]]
        check.evaluated += 1
        if tally is None or tally.success:
            continue
        problem, examples = tally.problem, tally.examples
        if not tally.error and (tally.kind in COUNTED or tally.kind == "expect_column_values_to_be_unique"):
            result = {"unexpected_count": tally.count, "partial_unexpected_list": tally.partial}
            problem, partial_examples = _explain(tally.kind, tally.kwargs, result, template, id_column)
            examples = examples or partial_examples
        check.failures.append(
            FailedExpectation(check.name, tally.kind, tally.kwargs.get("column"), problem, examples[:SAMPLE_SIZE])
        )
    _drop_consequences(checks)
    return ValidationReport(suite.name, rows, checks)


def _tally_batch(whole, suite: gx.ExpectationSuite, frame: pd.DataFrame, id_column: str, tallies: dict) -> None:
    """Validate one batch with GX and add its outcome to each expectation's tally."""
    result = whole.get_batch(batch_parameters={"dataframe": frame}).validate(
        suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL}
    )
    for item in result.results:
        config = item.expectation_config
        kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
        tally = tallies.setdefault(_key(config), _Tally(config.type, kwargs, config.meta["check"]))
        if item.success or (not tally.success and (tally.kind not in COUNTED or tally.error)):
            continue  # a schema problem is the same in every batch: explained once
        column = kwargs.get("column")
        if column is not None and column not in frame.columns and config.type != "expect_column_to_exist":
            continue  # the missing column is reported once, by expect_column_to_exist
        error = _exception_message(item.exception_info or {})
        if error:
            problem, examples = f"could not be evaluated: {error}", []
            tally.error = True
        else:
            problem, examples = _explain(config.type, kwargs, item.result or {}, frame, id_column)
            details = item.result or {}
            tally.count += details.get("unexpected_count") or 0
            tally.partial.extend((details.get("partial_unexpected_list") or [])[: PARTIAL - len(tally.partial)])
        if tally.success or tally.error:
            tally.problem = problem
        tally.success = False
        tally.examples.extend([e for e in examples if e not in tally.examples])


def _duplicated_values(batches: Callable[..., Iterator[pd.DataFrame]], column: str) -> dict[Any, int]:
    """The values of `column` that occur more than once across all batches, with their row counts (nulls ignored).

    Exact, with 8 bytes per row instead of the rows: a first pass keeps a 64-bit hash of each value and
    finds the hashes that repeat; a second pass gathers only the values with those hashes and counts
    them, so a hash collision is never reported as a duplicate.
    """
    hashes = [pd.util.hash_array(f[column].dropna().to_numpy()) for f in batches([column])]
    every = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
    del hashes
    every.sort()  # in place: no second copy
    repeated = np.unique(every[1:][every[1:] == every[:-1]])
    del every
    if not len(repeated):
        return {}
    candidates = []
    for f in batches([column]):
        values = f[column].dropna()
        candidates.append(values[np.isin(pd.util.hash_array(values.to_numpy()), repeated)])
    counts = pd.concat(candidates).value_counts(sort=False)
    return {value: int(n) for value, n in counts[counts > 1].items()}


def _drop_consequences(checks: dict[str, CheckOutcome]) -> None:
    """A column of the wrong type makes its range or set expectations raise; report the type problem once."""
    mistyped = {f.column for f in checks["schema"].failures if f.expectation.endswith("_in_type_list")}
    for check in checks.values():
        check.failures = [
            f for f in check.failures if not (f.column in mistyped and f.problem.startswith("could not be evaluated"))
        ]
