"""Request rows checked against the dataset spec, as the batch path's blocking data checks would.

Each row is a JSON object of the spec's columns without the target (the id optional). A row is
refused, naming the row, the column and the value, when a column is missing, a value has the
wrong type (numbers for numeric columns, text for categorical ones, a listed token for booleans),
is missing where the spec does not allow it, lies outside the spec's range, or is a category the
spec does not list; an unexpected column is refused or ignored per `unexpected_columns`. Categories
of a column the spec lists no values for are accepted: the features map unseen ones to `__other__`.

Requests are bounded (params.yaml `serving.limits`): more rows than `max_rows` is a LimitError (413)
and a request id longer than `max_request_id_chars` a problem of its row (422). An answer quotes at
most the first characters of a long value, so a request cannot have itself echoed back whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ml.params import RequestLimits
from ml.spec import DatasetSpec, token_key

REQUEST_ID = "request_id"  # the optional per-row request id, beside the spec's columns


@dataclass(frozen=True)
class Problem:
    row: int | None  # None: the request as a whole (its `rows`), not one row
    column: str
    value: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "value": self.value, "message": self.message}


class RequestError(ValueError):
    """The request cannot be scored; `problems` name each row, column and value at fault."""

    def __init__(self, problems: list[Problem], total: int | None = None):
        self.problems = problems
        first, total = problems[0], max(total or 0, len(problems))
        more = f" (and {total - 1} more)" if total > 1 else ""
        where = "" if first.row is None else f"row {first.row}: "
        super().__init__(f"{where}{first.message}{more}")


class LimitError(RequestError):
    """The request is larger than `serving.limits` allows (HTTP 413); the message names the limit."""


MAX_PROBLEMS = 20
QUOTED_CHARS = 80  # of a value in an answer


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except RecursionError:  # JSON may nest 1,024 deep, deeper than repr goes
        return f"<a {type(value).__name__} nested too deep to show>"


def shown(value: Any) -> str:
    """A value as an answer quotes it: its repr, cut after QUOTED_CHARS characters."""
    text = _repr(value)
    return text if len(text) <= QUOTED_CHARS else f"{text[:QUOTED_CHARS]}... ({len(text)} characters)"


def _quoted(value: Any) -> Any:
    """A value as a problem carries it back: long text and containers cut to `shown`."""
    if not isinstance(value, str | dict | list):
        return value
    try:
        text = repr(value)
    except RecursionError:  # too deep for repr is too deep for the answer's JSON as well
        return shown(value)
    return shown(value) if len(text) > QUOTED_CHARS else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RowValidator:
    def __init__(self, spec: DatasetSpec, limits: RequestLimits | None = None):
        self.spec = spec
        self.limits = limits or RequestLimits()
        self.id_column = spec.id.column
        self.timestamp = spec.timestamp.column if spec.timestamp else None
        self.numeric = list(spec.columns.numeric)
        self.categorical = list(spec.columns.categorical)
        self.boolean = list(spec.columns.boolean)
        self.required = spec.expected_columns(include_target=False)
        self.required.remove(self.id_column)  # the id is optional: a caller may have none yet
        self.known = {*self.required, self.id_column, REQUEST_ID}
        self.nullable = set(spec.nullable)
        self.ranges = {c: (r.min, r.max) for c, r in spec.ranges.items()}
        self.allowed = {c: frozenset(v) for c, v in spec.categories.items()}
        self.tokens = spec.booleans.true_keys | spec.booleans.false_keys
        self.reject_unexpected = spec.unexpected_columns == "reject"

    def validate(self, rows: Any) -> list[dict[str, Any]]:
        """The rows as dicts of the spec's input columns (the id when given), or RequestError."""
        if not isinstance(rows, list) or not rows:
            raise RequestError([Problem(None, "rows", _quoted(rows), "`rows` must be a non-empty list of objects")])
        if len(rows) > self.limits.max_rows:
            message = f"{len(rows)} rows is more than serving.limits.max_rows ({self.limits.max_rows}) in one request"
            raise LimitError([Problem(None, "rows", len(rows), message)])
        problems: list[Problem] = []
        clean = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.append(Problem(i, "(row)", _quoted(row), f"row {i} must be a JSON object of columns"))
                continue
            self._check(i, row, problems)
            if len(problems) >= MAX_PROBLEMS:
                break
            clean.append(row)
        if problems:  # at most MAX_PROBLEMS named: one row of 8,000 unknown keys must not make a 1 MB answer
            raise RequestError(problems[:MAX_PROBLEMS], total=len(problems))
        return clean

    def _check(self, i: int, row: dict[str, Any], problems: list[Problem]) -> None:
        def bad(column: str, value: Any, message: str) -> None:
            problems.append(Problem(i, column, _quoted(value), f"column {column!r}: {message}"))

        for column in self.required:
            if column not in row:
                bad(column, None, "is missing")
        if self.reject_unexpected:
            for column in row:
                if column not in self.known:
                    bad(
                        column,
                        row[column],
                        f"(value {shown(row[column])}) is not a column of the dataset spec (unexpected_columns: reject)",
                    )
        for column in self.numeric:
            value = row.get(column)
            if value is None:
                if column in row and column not in self.nullable:
                    bad(column, value, "is null but the spec does not list it as nullable")
            elif not _is_number(value) or not math.isfinite(value):
                bad(column, value, f"value {shown(value)} is not a number")
            elif column in self.ranges:
                low, high = self.ranges[column]
                if (low is not None and value < low) or (high is not None and value > high):
                    bad(column, value, f"value {shown(value)} is outside the spec's range {low} .. {high}")
        for column in self.categorical:
            value = row.get(column)
            if value is None:
                if column in row and column not in self.nullable:
                    bad(column, value, "is null but the spec does not list it as nullable")
            elif not isinstance(value, str):
                bad(column, value, f"value {shown(value)} is not text")
            elif column in self.allowed and value not in self.allowed[column]:
                bad(
                    column,
                    value,
                    f"value {shown(value)} is not one of the spec's categories {sorted(self.allowed[column])}",
                )
        for column in self.boolean:
            value = row.get(column)
            if value is None:
                if column in row and column not in self.nullable:
                    bad(column, value, "is null but the spec does not list it as nullable")
            elif isinstance(value, dict | list) or token_key(value) not in self.tokens:
                bad(column, value, f"value {shown(value)} is neither a true nor a false token {sorted(self.tokens)}")
        ident = row.get(self.id_column)
        if isinstance(ident, int) and not isinstance(ident, bool):
            row[self.id_column] = str(ident)  # ids are compared as text everywhere (ml/ids.py): 7 is "7"
        for column in (self.id_column, REQUEST_ID, self.timestamp):
            value = row.get(column) if column else None
            if value is not None and not isinstance(value, str):
                bad(
                    column,
                    value,
                    f"value {shown(value)} is not text" + (" or an integer" if column == self.id_column else ""),
                )
            elif value is not None and len(value) > self.limits.max_request_id_chars and column != self.timestamp:
                limit = self.limits.max_request_id_chars
                bad(
                    column, value, f"{len(value)} characters is more than serving.limits.max_request_id_chars ({limit})"
                )
