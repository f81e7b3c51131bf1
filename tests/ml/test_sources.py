"""Reading source files and the import: what cannot be read fails naming the file; outputs are atomic."""

import pandas as pd
import pytest

from ml import io
from ml.ingest import import_raw, main, with_ids
from ml.sources import SourceError, read_frame


def test_csv_text_columns_keep_their_form(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,label,n\n007,1,3\n008,0,\n")
    frame = read_frame(str(path), "csv", text_columns=["id", "label"])
    assert frame["id"].tolist() == ["007", "008"]
    assert frame["label"].tolist() == ["1", "0"]
    assert frame["n"].isna().tolist() == [False, True]


def test_parquet_text_columns_become_text(tmp_path):
    path = tmp_path / "in.parquet"
    pd.DataFrame({"code": [1, 2, None], "x": [0.5, 1.5, 2.5]}).to_parquet(path)
    frame = read_frame(str(path), "parquet", text_columns=["code"])
    assert frame["code"].tolist()[:2] == ["1.0", "2.0"] and pd.isna(frame["code"].iloc[2])


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        (None, "csv", "source file not found"),
        (b"", "csv", "is empty (0 bytes)"),
        (b"\n\n", "csv", "has no header row"),
        (b"a,b\n1,\xff\xfe\n", "csv", "is not valid utf-8 text (byte 0xff"),
        (b'a,b\n1,"unclosed\n', "csv", "is not well-formed CSV"),
        (b"PAR1 not really parquet", "parquet", "is not a readable Parquet file"),
    ],
    ids=["missing", "empty", "blank-lines", "non-utf8", "bad-quote", "corrupt-parquet"],
)
def test_unreadable_files_name_file_and_problem(tmp_path, content, fmt, message):
    path = tmp_path / f"source.{fmt}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError) as caught:
        read_frame(str(path), fmt)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_header_only_file_reads_as_zero_rows(tmp_path):
    path = tmp_path / "source.csv"
    path.write_text("a,b\n")
    assert read_frame(str(path), "csv").shape == (0, 2)


def test_generated_ids_are_stable_and_first(spec, telco_source):
    a, b = with_ids(telco_source, spec), with_ids(telco_source, spec)
    assert a.columns[0] == spec.id.column
    assert a[spec.id.column].iloc[0] == "C0000001" and a[spec.id.column].is_unique
    assert a[spec.id.column].equals(b[spec.id.column])


def test_generated_id_may_not_overwrite_a_source_column(spec, telco_source):
    with pytest.raises(SourceError, match="already has a column 'customer_id'"):
        with_ids(telco_source.assign(customer_id="x"), spec)


def test_failed_import_keeps_the_previous_raw_file(tmp_path, spec, telco_source):
    source = tmp_path / "data" / "source" / "telco_churn.csv"
    source.parent.mkdir(parents=True)
    telco_source.to_csv(source, index=False)
    out = "data/raw/data.parquet"
    imported = import_raw(spec, tmp_path, out)
    before = io.file_digest(str(tmp_path / out))
    assert len(imported) == len(telco_source)

    source.write_bytes(b"tenure\n\xff\n")
    with pytest.raises(SourceError):
        import_raw(spec, tmp_path, out)
    assert io.file_digest(str(tmp_path / out)) == before
    assert [p.name for p in (tmp_path / "data" / "raw").iterdir()] == ["data.parquet"]  # no temp files left


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("dataset: {name: x}\n")
    assert main(["--params", str(params), "--out", "raw.parquet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("import failed:") and "dataset.source: Field required" in err
    assert not (tmp_path / "raw.parquet").exists()


def test_atomic_output_removes_the_temporary_file_on_error(tmp_path):
    target = tmp_path / "out.json"
    io.write_json({"v": 1}, str(target))
    with pytest.raises(RuntimeError), io.atomic_output(str(target)) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert io.read_json(str(target)) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_timestamp_columns_are_parsed_or_left_for_the_checks(tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("at,n\n2026-01-02,1\n2026-01-03 04:05:06,2\n")
    bad.write_text("at,n\n2026-01-02,1\nyesterday,2\n")
    parsed = read_frame(str(good), "csv", datetime_columns=["at"])
    assert str(parsed["at"].dtype).startswith("datetime64") and parsed["at"].iloc[1].hour == 4
    kept = read_frame(str(bad), "csv", datetime_columns=["at"])
    assert kept["at"].tolist() == ["2026-01-02", "yesterday"]


def test_a_parquet_source_with_money_as_decimals_is_imported_as_numbers_the_raw_checks_pass(
    spec, telco_source, tmp_path
):
    """A source whose numeric columns are decimal128(10, 2) was imported as Python Decimal objects, and the raw
    data checks refused it: "type is object, expected one of ['int8', ...]"."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from data_checks.suite import build_suite
    from data_checks.validation import validate_frame

    table = pa.Table.from_pandas(telco_source, preserve_index=False)
    money = {"monthly_charges": [], "total_charges": []}
    for column in money:
        money[column] = [None if pd.isna(v) else Decimal(f"{v:.2f}") for v in telco_source[column]]
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, pa.array(money[column], pa.decimal128(10, 2)))
    source = tmp_path / "warehouse.parquet"
    pq.write_table(table, source)
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"uri": str(source)})})
    out = tmp_path / "raw.parquet"
    import_raw(spec, tmp_path, str(out))
    raw = pd.read_parquet(out)
    for column, values in money.items():
        assert raw[column].dtype == "float64"
        expected = [float(v) if v is not None else None for v in values]
        assert [None if pd.isna(v) else v for v in raw[column]] == expected
    report = validate_frame(raw, build_suite(spec), id_column=spec.id.column)
    assert [f.line() for f in report.failures] == []
