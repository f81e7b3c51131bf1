"""Build a Great Expectations (1.x) suite from the dataset spec.

The same builder serves the raw training data (with the target) and, later, the daily incoming
partitions (without the target, with their own row bounds). Each expectation carries the name of
the data check it belongs to in `meta["check"]` (see data_checks/groups.py).
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from ml.spec import DatasetSpec, RowBounds

_INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
_FLOATS = ["float16", "float32", "float64"]
NUMERIC_TYPES = [
    *_INTS,
    *_FLOATS,
    *(t.capitalize() for t in _INTS),
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "Float32",
    "Float64",
]
TEXT_TYPES = ["object", "str", "string", "category"]
# Ids may be text or integers: they are compared as text everywhere (ml/ids.py), so 7 and "7" are one id.
ID_TYPES = [*TEXT_TYPES, *_INTS, *(t.capitalize() for t in _INTS), "UInt8", "UInt16", "UInt32", "UInt64"]
TIMESTAMP_TYPES = [f"datetime64[{unit}{tz}]" for unit in ("ns", "us", "ms", "s") for tz in ("", ", UTC")]


def _with_check(check: str, expectation: gxe.Expectation) -> gxe.Expectation:
    expectation.meta = {"check": check}
    return expectation


def build_suite(
    spec: DatasetSpec, *, include_target: bool = True, rows: RowBounds | None = None, name: str | None = None
) -> gx.ExpectationSuite:
    """The expectation suite for files of this spec.

    include_target: False for rows that are scored before their labels exist.
    rows: row-count bounds; the spec's `rows` by default.
    """
    rows = rows or spec.rows
    expected = spec.expected_columns(include_target=include_target)
    types = {c: TEXT_TYPES for c in spec.columns.categorical}
    types[spec.id.column] = ID_TYPES
    types |= {c: NUMERIC_TYPES for c in spec.columns.numeric}
    if spec.timestamp:
        types[spec.timestamp.column] = TIMESTAMP_TYPES
    if include_target:
        types[spec.target.column] = TEXT_TYPES

    expectations: list[gxe.Expectation] = [
        _with_check(
            "schema",
            gxe.ExpectTableColumnsToMatchSet(column_set=expected, exact_match=spec.unexpected_columns == "reject"),
        )
    ]
    for col in expected:
        expectations.append(_with_check("schema", gxe.ExpectColumnToExist(column=col)))
        if col in types:  # booleans come as 0/1, True/False or text: their allowed values are checked instead
            expectations.append(
                _with_check("schema", gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=types[col]))
            )
        if col not in spec.nullable:
            expectations.append(_with_check("completeness", gxe.ExpectColumnValuesToNotBeNull(column=col)))
    for col, bounds in spec.ranges.items():
        expectations.append(
            _with_check(
                "validity", gxe.ExpectColumnValuesToBeBetween(column=col, min_value=bounds.min, max_value=bounds.max)
            )
        )
    for col, allowed in spec.categories.items():
        expectations.append(_with_check("validity", gxe.ExpectColumnValuesToBeInSet(column=col, value_set=allowed)))
    accepted = spec.booleans.accepted_values()
    for col in spec.columns.boolean:
        expectations.append(_with_check("validity", gxe.ExpectColumnValuesToBeInSet(column=col, value_set=accepted)))
    if include_target:
        expectations.append(
            _with_check(
                "validity",
                gxe.ExpectColumnValuesToBeInSet(
                    column=spec.target.column, value_set=[spec.target.positive, spec.target.negative]
                ),
            )
        )
    expectations.append(_with_check("uniqueness", gxe.ExpectColumnValuesToBeUnique(column=spec.id.column)))
    expectations.append(
        _with_check("volume", gxe.ExpectTableRowCountToBeBetween(min_value=rows.min, max_value=rows.max))
    )

    # Built unbound (expectations passed in, not added): no GX data context is needed until validation.
    return gx.ExpectationSuite(
        name=name or f"{spec.name}{'' if include_target else '_unlabelled'}", expectations=expectations
    )
