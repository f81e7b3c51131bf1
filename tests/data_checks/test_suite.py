"""The GX suite built from the spec, run on the real Telco rows and on broken copies of them."""

import numpy as np
import pandas as pd

from data_checks.groups import CHECK_NAMES
from data_checks.suite import build_suite
from data_checks.validation import validate_frame
from ml.spec import RowBounds


def validate(frame, spec, **kwargs):
    return validate_frame(frame, build_suite(spec, **kwargs), id_column=spec.id.column)


def expectations_by_check(suite) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for expectation in suite.expectations:
        found.setdefault(expectation.meta["check"], set()).add(expectation.expectation_type)
    return found


def test_suite_covers_every_check_family(spec):
    suite = build_suite(spec)
    found = expectations_by_check(suite)
    assert set(found) == set(CHECK_NAMES)
    assert "expect_table_columns_to_match_set" in found["schema"]
    assert found["completeness"] == {"expect_column_values_to_not_be_null"}
    assert {"expect_column_values_to_be_between", "expect_column_values_to_be_in_set"} <= found["validity"]
    assert found["uniqueness"] == {"expect_column_values_to_be_unique"}
    assert found["volume"] == {"expect_table_row_count_to_be_between"}
    nullable_checked = [
        e
        for e in suite.expectations
        if e.expectation_type == "expect_column_values_to_not_be_null" and e.column in spec.nullable
    ]
    assert nullable_checked == []


def test_unlabelled_suite_for_incoming_rows_leaves_out_the_target(spec):
    suite = build_suite(spec, include_target=False, rows=RowBounds(min=1, max=10))
    columns = {getattr(e, "column", None) for e in suite.expectations}
    assert spec.target.column not in columns
    row_count = next(e for e in suite.expectations if e.expectation_type == "expect_table_row_count_to_be_between")
    assert (row_count.min_value, row_count.max_value) == (1, 10)


def test_real_data_passes(spec, telco_raw):
    report = validate(telco_raw, spec)
    assert report.success, report.describe()
    assert sum(c.evaluated for c in report.checks.values()) == len(build_suite(spec).expectations)


def test_incoming_rows_without_target_pass_the_unlabelled_suite(spec, telco_raw):
    report = validate(
        telco_raw.drop(columns=[spec.target.column]).head(200),
        spec,
        include_target=False,
        rows=RowBounds(min=100, max=1000),
    )
    assert report.success, report.describe()


def failures(report, check):
    return report.checks[check].failures


def test_missing_column(spec, telco_raw):
    report = validate(telco_raw.drop(columns=["contract"]), spec)
    lines = [f.line() for f in failures(report, "schema")]
    assert any("missing columns ['contract']" in line for line in lines)
    assert any("expect_column_to_exist on column 'contract': column is missing" in line for line in lines)
    # The missing column's value expectations do not add noise to the other checks.
    assert not any(f.column == "contract" for f in failures(report, "validity"))


def test_unexpected_column_rejected_or_ignored(spec, telco_raw):
    extra = telco_raw.assign(loyalty_points=1)
    rejected = validate(extra, spec)
    assert "unexpected columns ['loyalty_points']" in failures(rejected, "schema")[0].problem
    ignoring = spec.model_copy(update={"unexpected_columns": "ignore"})
    assert validate(extra, ignoring).success


def test_wrong_dtype_names_column_and_values(spec, telco_raw):
    bad = telco_raw.copy()
    bad["tenure"] = bad["tenure"].astype(object)
    bad.loc[bad.index[5], "tenure"] = "twelve"
    report = validate(bad, spec)
    (failure,) = failures(report, "schema")
    assert failure.column == "tenure" and "type is object" in failure.problem
    assert failure.examples == ["'twelve'"]
    assert not failures(report, "validity")  # the range check's error is a consequence, reported once


def test_nulls_in_required_column_name_the_rows(spec, telco_raw):
    bad = telco_raw.copy()
    bad.loc[bad.index[[3, 8]], "contract"] = np.nan
    (failure,) = failures(validate(bad, spec), "completeness")
    assert failure.column == "contract" and failure.problem == "2 missing value(s)"
    assert failure.examples == ["customer_id=C0000004", "customer_id=C0000009"]


def test_nulls_in_nullable_column_pass(spec, telco_raw):
    assert telco_raw["total_charges"].isna().sum() == 11
    assert validate(telco_raw, spec).checks["completeness"].passed


def test_out_of_range_value(spec, telco_raw):
    bad = telco_raw.copy()
    bad.loc[bad.index[0], "monthly_charges"] = -5.0
    (failure,) = failures(validate(bad, spec), "validity")
    assert failure.column == "monthly_charges" and "outside [0.0, 500.0]" in failure.problem
    assert failure.examples == ["-5.0"]


def test_unknown_category_and_boolean_token(spec, telco_raw):
    bad = telco_raw.copy()
    bad.loc[bad.index[0], "contract"] = "Weekly"
    bad.loc[bad.index[1], "partner"] = 2
    found = {f.column: f for f in failures(validate(bad, spec), "validity")}
    assert found["contract"].examples == ["'Weekly'"]
    assert found["partner"].examples == ["2"]


def test_unknown_target_label(spec, telco_raw):
    bad = telco_raw.copy()
    bad.loc[bad.index[0], "churn"] = "Maybe"
    (failure,) = failures(validate(bad, spec), "validity")
    assert failure.column == "churn" and failure.examples == ["'Maybe'"]


def test_duplicate_ids(spec, telco_raw):
    bad = telco_raw.copy()
    bad.loc[bad.index[1], spec.id.column] = bad.loc[bad.index[0], spec.id.column]
    (failure,) = failures(validate(bad, spec), "uniqueness")
    assert failure.problem == "2 row(s) share an id with another row" and failure.examples == ["'C0000001'"]


def test_row_count_bounds(spec, telco_raw):
    report = validate(telco_raw.head(0), spec)
    (failure,) = failures(report, "volume")
    assert failure.problem == "0 rows, expected between 1000 and 5000000"
    assert [name for name, c in report.checks.items() if not c.passed] == ["volume"]


def test_timestamp_column_must_be_a_datetime(spec, telco_raw):
    from ml.spec import TimestampSpec

    timed = spec.model_copy(update={"timestamp": TimestampSpec(column="signed_up")})
    stamps = pd.date_range("2024-01-01", periods=len(telco_raw), freq="h")
    assert validate(telco_raw.assign(signed_up=stamps), timed).success
    text = pd.Series(stamps.astype(str), index=telco_raw.index)
    text.iloc[2] = "last tuesday"
    (failure,) = failures(validate(telco_raw.assign(signed_up=text), timed), "schema")
    assert failure.column == "signed_up" and "type is object" in failure.problem
    assert failure.examples == ["'last tuesday'"]


def test_integer_ids_pass_and_float_ids_are_refused_with_what_to_do(spec, telco_raw):
    day = telco_raw.drop(columns=[spec.target.column]).head(200)
    numbered = day.assign(**{spec.id.column: range(1, 201)})
    assert validate(numbered, spec, include_target=False, rows=RowBounds(min=100)).success
    floated = day.assign(**{spec.id.column: [float(n) for n in range(1, 201)]})
    (failure,) = failures(validate(floated, spec, include_target=False, rows=RowBounds(min=100)), "schema")
    assert failure.column == spec.id.column
    assert failure.problem == "type is float64; ids must be text or integers (compared as text)"
