"""The dataset spec: how the pipeline learns a data set's columns, target, id and bounds.

The spec lives in the `dataset:` section of params.yaml (so DVC tracks it as a parameter) and is
the only place that names columns: nothing else in the project may assume a data set's column names.
A broken spec fails when params.yaml is loaded (ml/params.py), with a message that names the key or
column at fault.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Label = str | int | bool
"""A target label or boolean token as written in YAML."""


class SpecError(ValueError):
    """The dataset spec is malformed; the message names the key or column at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _column_name(value: Any) -> Any:
    """A column name must be one a file's header can show: not empty, no control or invisible character (a NUL,
    a newline, a zero-width space, a line separator), which no person would see differ from the data's name."""
    if not isinstance(value, str):
        return value  # pydantic names the wrong type
    if not value:
        raise ValueError("a column name is empty ('')")
    odd = sorted({c for c in value if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")})
    if odd:
        raise ValueError(f"column name {value!r} holds {', '.join(map(repr, odd))}: a control or invisible character")
    return value


class SourceSpec(_Strict):
    uri: str = Field(description="CSV or Parquet file: a path relative to the project, or an fsspec URI.")
    format: Literal["auto", "csv", "parquet"] = "auto"
    encoding: str = "utf-8"

    @property
    def resolved_format(self) -> Literal["csv", "parquet"]:
        if self.format != "auto":
            return self.format
        name = self.uri.lower().split("?")[0]
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return "csv"
        if name.endswith((".parquet", ".pq")):
            return "parquet"
        raise SpecError(
            f"dataset.source.format: cannot tell the format of {self.uri!r} from its suffix; "
            "set format: csv or format: parquet"
        )


class TargetSpec(_Strict):
    column: str
    positive: str
    negative: str

    _named = field_validator("column", mode="before")(_column_name)

    @field_validator("positive", "negative", mode="before")
    @classmethod
    def _label_as_text(cls, value: Any) -> str:
        # The target is imported as text, so labels are compared as text.
        if isinstance(value, bool):
            raise ValueError(
                f'YAML read this label as the boolean {value}; quote it as it appears in the data, e.g. "Yes"'
            )
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"the label {value!r} is blank; write it as it appears in the data")
        if isinstance(value, (int, float, str)):
            return str(value)
        raise ValueError(f"a label must be text or a number, got {value!r}")

    @model_validator(mode="after")
    def _distinct(self) -> TargetSpec:
        if self.positive == self.negative:
            raise ValueError(f"positive and negative labels are both {self.positive!r}")
        return self


class IdSpec(_Strict):
    column: str
    generate: Literal["row_number"] | None = Field(
        default=None,
        description="None: the source has the id column. row_number: the import numbers the rows.",
    )
    prefix: str = ""

    _named = field_validator("column", mode="before")(_column_name)


class TimestampSpec(_Strict):
    column: str

    _named = field_validator("column", mode="before")(_column_name)


class ColumnsSpec(_Strict):
    numeric: list[str] = []
    categorical: list[str] = []
    boolean: list[str] = []

    @field_validator("numeric", "categorical", "boolean", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        return [_column_name(name) for name in value] if isinstance(value, list) else value

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.boolean]


class RangeSpec(_Strict):
    min: float | None = None
    max: float | None = None

    @field_validator("min", "max")
    @classmethod
    def _a_number(cls, value: float | None) -> float | None:
        # NaN compares false with every value: a bound of NaN would let every value pass.
        if value is not None and math.isnan(value):
            raise ValueError("nan is not a bound; give a number or leave the bound out")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


def token_key(value: Any) -> str:
    """The text a boolean token is matched by: True, 1, 1.0 and "1" are all "1"."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class BooleanTokens(_Strict):
    # Not `true:` / `false:`: YAML would read those keys as booleans.
    true_values: list[Label] = [1, "true", "True", "yes", "Yes"]
    false_values: list[Label] = [0, "false", "False", "no", "No"]

    @property
    def true_keys(self) -> frozenset[str]:
        return frozenset(token_key(v) for v in self.true_values)

    @property
    def false_keys(self) -> frozenset[str]:
        return frozenset(token_key(v) for v in self.false_values)

    def accepted_values(self) -> list[Label]:
        """Every raw value that matches a token: the tokens, their text keys, and 0/1 as numbers."""
        values: list[Label] = [*self.true_values, *self.false_values, *sorted(self.true_keys | self.false_keys)]
        values += [int(k) for k in sorted(self.true_keys | self.false_keys) if k.lstrip("-").isdigit()]
        unique = {(type(v), v): v for v in values}  # 1 and "1" both stay; 1 twice does not
        return list(unique.values())

    @model_validator(mode="after")
    def _disjoint(self) -> BooleanTokens:
        both = self.true_keys & self.false_keys
        if both:
            raise ValueError(f"tokens {sorted(both)} are listed as both true and false")
        return self


class RowBounds(_Strict):
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RowBounds:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    source: SourceSpec
    target: TargetSpec
    id: IdSpec
    timestamp: TimestampSpec | None = None
    columns: ColumnsSpec
    ranges: dict[str, RangeSpec] = {}
    categories: dict[str, list[str]] = {}
    nullable: list[str] = []
    booleans: BooleanTokens = BooleanTokens()
    rows: RowBounds = RowBounds()
    unexpected_columns: Literal["reject", "ignore"] = Field(
        default="reject",
        description="reject: a column the spec does not name fails the schema check. ignore: it is kept but unused.",
    )

    @field_validator("categories")
    @classmethod
    def _categories_as_text(cls, value: dict[str, list[Any]]) -> dict[str, list[str]]:
        # Categorical columns are imported as text, so allowed values are compared as text.
        return {col: [str(v) for v in values] for col, values in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        problems: list[str] = []
        seen: dict[str, str] = {}
        for kind in ("numeric", "categorical", "boolean"):
            for col in getattr(self.columns, kind):
                if col in seen:
                    where = "twice in" if seen[col] == kind else f"as both {seen[col]} and"
                    problems.append(f"column {col!r} is declared {where} {kind}")
                seen[col] = kind
        if not seen:
            problems.append("columns: no feature columns declared (numeric, categorical or boolean)")
        for role, col in self.role_columns.items():
            if col in seen:
                problems.append(f"{role} column {col!r} is also declared as a {seen[col]} feature")
        roles = list(self.role_columns.values())
        for col in {c for c in roles if roles.count(c) > 1}:
            problems.append(f"column {col!r} is used for more than one of target / id / timestamp")

        def unknown(key: str, cols: list[str], allowed: list[str], kind: str) -> None:
            for col in cols:
                if col not in allowed:
                    declared = ", ".join(allowed) or "none"
                    problems.append(f"{key}: unknown column {col!r} (declared {kind} columns: {declared})")

        unknown("ranges", list(self.ranges), self.columns.numeric, "numeric")
        unknown("categories", list(self.categories), self.columns.categorical, "categorical")
        unknown("nullable", self.nullable, self.columns.features, "feature")
        for col, values in self.categories.items():
            if not values:
                problems.append(f"categories.{col}: the list of allowed values is empty")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def role_columns(self) -> dict[str, str]:
        roles = {"target": self.target.column, "id": self.id.column}
        if self.timestamp:
            roles["timestamp"] = self.timestamp.column
        return roles

    def describe(self, column: str) -> str:
        """What the spec says about a column, in a few words (shown beside the column in the UI)."""
        if column == self.target.column:
            return f"target: {self.target.positive!r} positive, {self.target.negative!r} negative"
        if column == self.id.column:
            return "id" + (f" (generated: {self.id.generate})" if self.id.generate else "")
        if self.timestamp and column == self.timestamp.column:
            return "timestamp"
        notes = ["nullable"] if column in self.nullable else []
        if column in self.columns.numeric:
            bounds = self.ranges.get(column)
            if bounds:
                notes.append(
                    f"range {bounds.min if bounds.min is not None else '-inf'} .. {bounds.max if bounds.max is not None else 'inf'}"
                )
            return ", ".join(["numeric feature", *notes])
        if column in self.columns.categorical:
            allowed = self.categories.get(column)
            return ", ".join(["categorical feature", *notes, *([f"{len(allowed)} allowed values"] if allowed else [])])
        if column in self.columns.boolean:
            return ", ".join(["boolean feature", *notes])
        return "not in the dataset spec"

    @property
    def feature_columns(self) -> list[str]:
        return self.columns.features

    @property
    def text_columns(self) -> list[str]:
        """Columns imported as text: the id, the target and the categorical features."""
        return [self.id.column, self.target.column, *self.columns.categorical]

    def expected_columns(self, *, include_target: bool) -> list[str]:
        """Every column a file for this spec must have, in a stable order."""
        cols = [self.id.column]
        if self.timestamp:
            cols.append(self.timestamp.column)
        cols += self.feature_columns
        if include_target:
            cols.append(self.target.column)
        return cols

    def source_columns(self) -> list[str]:
        """The columns the source file must have (a generated id is added by the import)."""
        cols = self.expected_columns(include_target=True)
        return cols[1:] if self.id.generate else cols
