"""A file checked batch by batch gives the same verdicts, counts and examples as the whole frame at once."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_checks.suite import build_suite
from data_checks.validation import validate_frame, validate_parquet
from ml.spec import RowBounds


@pytest.fixture
def broken(telco_raw, spec):
    """The Telco rows with one of each problem, spread so that each family has hits in several batches."""
    bad = telco_raw.drop(columns=[spec.target.column]).copy()
    bad.loc[[3, 5000], "contract"] = np.nan  # completeness, in batches 1 and 6
    bad.loc[[10, 6000], "monthly_charges"] = [-1.0, 9999.0]  # validity (range), batches 1 and 7
    bad.loc[6999, "payment_method"] = "Barter"  # validity (set), the last batch
    bad.loc[[2500, 7000], spec.id.column] = bad.loc[1, spec.id.column]  # one id on three rows, three batches
    return bad


def lines(report) -> dict[str, list[str]]:
    return {name: sorted(f.line() for f in outcome.failures) for name, outcome in report.checks.items()}


def test_batches_of_a_file_give_the_whole_frames_report(broken, spec, tmp_path):
    suite = build_suite(spec, include_target=False, rows=RowBounds(min=100, max=7000))
    path = tmp_path / "day.parquet"
    pq.write_table(pa.Table.from_pandas(broken, preserve_index=False), path, row_group_size=1000)
    whole = validate_frame(broken, suite, id_column=spec.id.column)
    with pq.ParquetFile(path) as parquet:
        streamed = validate_parquet(parquet, suite, id_column=spec.id.column, batch_rows=1000)
    assert streamed.rows == whole.rows == 7043
    assert lines(streamed) == lines(whole)
    found = {f.column or f.expectation: f for f in streamed.failures}
    assert found["contract"].problem == "2 missing value(s)"
    assert found["contract"].examples == [f"customer_id={broken.loc[i, spec.id.column]}" for i in (3, 5000)]
    assert found["monthly_charges"].problem.startswith("2 value(s) outside") and found["monthly_charges"].examples == [
        "-1.0",
        "9999.0",
    ]
    assert found["payment_method"].examples == ["'Barter'"]
    assert found[spec.id.column].problem == "3 row(s) share an id with another row"
    assert found["expect_table_row_count_to_be_between"].problem == "7043 rows, expected between 100 and 7000"
    assert {name for name, c in streamed.checks.items() if not c.passed} == {
        "completeness",
        "validity",
        "uniqueness",
        "volume",
    }


def test_an_empty_file_is_checked_on_its_columns(broken, spec, tmp_path):
    suite = build_suite(spec, include_target=False, rows=RowBounds(min=1, max=10))
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pandas(broken.head(0), preserve_index=False), path)
    with pq.ParquetFile(path) as parquet:
        report = validate_parquet(parquet, suite, id_column=spec.id.column)
    assert report.rows == 0 and [n for n, c in report.checks.items() if not c.passed] == ["volume"]
    without = tmp_path / "without.parquet"
    pq.write_table(pa.Table.from_pandas(broken.drop(columns=["contract"]).head(0), preserve_index=False), without)
    with pq.ParquetFile(without) as parquet:
        schema = validate_parquet(parquet, suite, id_column=spec.id.column).checks["schema"]
    assert any("missing columns ['contract']" in f.problem for f in schema.failures)


def test_a_file_with_category_columns_is_checked_on_its_values(telco_raw, spec, tmp_path):
    """pandas writes a `category` column as a Parquet dictionary column: allowed values pass, others are named."""
    rows = telco_raw.drop(columns=[spec.target.column]).head(2000).copy()
    suite = build_suite(spec, include_target=False, rows=RowBounds(min=100, max=7000))
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    rows.astype({c: "category" for c in spec.columns.categorical}).to_parquet(good, index=False)
    with pq.ParquetFile(good) as parquet:
        assert all(c.passed for c in validate_parquet(parquet, suite, id_column=spec.id.column).checks.values())
    rows.loc[7, "contract"] = "Lifetime"
    rows.astype({"contract": "category"}).to_parquet(bad, index=False)
    with pq.ParquetFile(bad) as parquet:
        report = validate_parquet(parquet, suite, id_column=spec.id.column)
    assert [n for n, c in report.checks.items() if not c.passed] == ["validity"]
    assert [f.examples for f in report.failures if f.column == "contract"] == [["'Lifetime'"]]
    rows.loc[9, "tenure"] = None  # a numeric category with a gap: checked as a null, not a crash
    rows.astype({"tenure": "category"}).to_parquet(bad, index=False)
    with pq.ParquetFile(bad) as parquet:
        report = validate_parquet(parquet, suite, id_column=spec.id.column)
    assert [f.problem for f in report.failures if f.column == "tenure"] == ["1 missing value(s)"]


def test_a_utc_timestamp_passes_the_type_its_spec_lists_and_another_zone_is_named(telco_raw, spec, tmp_path):
    """The suite lists `datetime64[ns, UTC]` for a timestamp column, but GX's type check refused it whatever the
    list said ("type is datetime64[ns, UTC], expected one of [..., 'datetime64[ns, UTC]', ...]")."""
    from ml.spec import TimestampSpec

    timed = spec.model_copy(update={"timestamp": TimestampSpec(column="at")})
    suite = build_suite(timed, include_target=False, rows=RowBounds(min=100, max=7000))
    rows = telco_raw.drop(columns=[spec.target.column]).head(1000)
    at = pd.date_range("2026-10-01", periods=len(rows), freq="min")
    for name, stamps in [("naive", at), ("utc", at.tz_localize("UTC")), ("paris", at.tz_localize("Europe/Paris"))]:
        path = tmp_path / f"{name}.parquet"
        rows.assign(at=stamps).to_parquet(path, index=False)
        with pq.ParquetFile(path) as parquet:
            report = validate_parquet(parquet, suite, id_column=spec.id.column)
        framed = validate_frame(rows.assign(at=stamps), suite, id_column=spec.id.column)
        failed = {n for n, c in report.checks.items() if not c.passed}
        assert failed == {n for n, c in framed.checks.items() if not c.passed}, name
        if name == "paris":
            assert failed == {"schema"}
            assert [f.problem for f in report.failures if f.column == "at"] == [
                "type is datetime64[ns, Europe/Paris], expected one of ['datetime64[ns]', 'datetime64[ns, UTC]', "
                "'datetime64[us]', 'datetime64[us, UTC]']..."
            ]
        else:
            assert failed == set(), (name, [f.line() for f in report.failures])


def test_a_decimal_column_the_spec_does_not_declare_numeric_is_named_as_decimals(telco_raw, spec, tmp_path):
    """A numeric column exported as decimals is checked as float64 (tests/ml/test_score.py); any other column
    holding decimals was named "type is object"."""
    from decimal import Decimal

    suite = build_suite(spec, include_target=False, rows=RowBounds(min=100, max=7000))
    rows = telco_raw.drop(columns=[spec.target.column]).head(1000)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    ids = pa.array([Decimal(n) for n in range(len(rows))], pa.decimal128(10, 0))
    table = table.set_column(table.schema.get_field_index(spec.id.column), spec.id.column, ids)
    path = tmp_path / "decimal-ids.parquet"
    pq.write_table(table, path)
    with pq.ParquetFile(path) as parquet:
        report = validate_parquet(parquet, suite, id_column=spec.id.column)
    assert [f.problem for f in report.failures] == [
        "type is decimal (Python Decimal objects); ids must be text or integers (compared as text)"
    ]
