"""Run an expectation suite on a DataFrame and say, per data check, what failed and on which values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from data_checks.groups import CHECK_NAMES
from data_checks.suite import TIMESTAMP_TYPES, gx

SAMPLE_SIZE = 5


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
        observed = frame[column].dtype if column in frame else result.get("observed_value")
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


def _exception_message(info: dict) -> str | None:
    """GX reports an exception either at the top level or per metric that raised it."""
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error").splitlines()[0]
    return None


def validate_frame(frame: pd.DataFrame, suite: gx.ExpectationSuite, *, id_column: str) -> ValidationReport:
    """Validate a whole DataFrame as one batch with an ephemeral GX context (nothing written to disk)."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    batch = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20})
    checks = {name: CheckOutcome(name) for name in CHECK_NAMES}
    for item in result.results:
        config = item.expectation_config
        check = checks[config.meta["check"]]
        check.evaluated += 1
        if item.success:
            continue
        kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
        column = kwargs.get("column")
        if column is not None and column not in frame.columns and config.type != "expect_column_to_exist":
            continue  # the missing column is reported once, by expect_column_to_exist
        error = _exception_message(item.exception_info or {})
        if error:
            problem, examples = f"could not be evaluated: {error}", []
        else:
            problem, examples = _explain(config.type, kwargs, item.result or {}, frame, id_column)
        check.failures.append(FailedExpectation(check.name, config.type, column, problem, examples))
    _drop_consequences(checks)
    return ValidationReport(suite.name, len(frame), checks)


def _drop_consequences(checks: dict[str, CheckOutcome]) -> None:
    """A column of the wrong type makes its range or set expectations raise; report the type problem once."""
    mistyped = {f.column for f in checks["schema"].failures if f.expectation.endswith("_in_type_list")}
    for check in checks.values():
        check.failures = [
            f for f in check.failures if not (f.column in mistyped and f.problem.startswith("could not be evaluated"))
        ]
