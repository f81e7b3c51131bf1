"""Drafting the dataset spec from a file: kinds, ranges, categories, id, timestamp and labels, validated as loaded."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from ml.params import parse_params
from ml.spec_draft import DraftError, draft, main, numeric_range, read_source, render, replace_section
from tests.conftest import REPO


def frame() -> pd.DataFrame:
    n = 400
    return pd.DataFrame(
        {
            "account_id": range(1001, 1001 + n),
            "signed_up": pd.date_range("2026-01-01", periods=n, freq="6h").strftime("%Y-%m-%d %H:%M"),
            "age": [20 + i % 50 for i in range(n)],
            "balance": [None if i % 40 == 0 else i * 2.5 for i in range(n)],
            "plan": ["basic", "pro", "team", None][:3] * (n // 3) + ["basic"] * (n % 3),
            "paperless": [i % 2 for i in range(n)],
            "vip": ["yes" if i % 7 == 0 else "no" for i in range(n)],
            "note": [f"free text {i}" for i in range(n)],
            "left": ["stayed" if i % 4 else "left" for i in range(n)],
        }
    )


@pytest.fixture
def source(tmp_path) -> str:
    path = tmp_path / "accounts.csv"
    frame().to_csv(path, index=False)
    return str(path)


def drafted(source: str, **options):
    inferred, text = read_source(source, "csv")
    return draft(inferred, text, uri=source, target="left", name="accounts", **options)


def test_kinds_roles_ranges_and_labels_are_guessed_with_reasons(source):
    result = drafted(source)
    section = result.section
    assert section["target"] == {"column": "left", "positive": "left", "negative": "stayed"}  # the minority
    assert section["id"] == {"column": "account_id"}
    assert section["timestamp"] == {"column": "signed_up"}
    assert section["columns"] == {
        "numeric": ["age", "balance"],
        "categorical": ["plan"],
        "boolean": ["paperless", "vip"],
    }
    assert section["ranges"]["age"] == {"min": 15, "max": 74}  # 20 .. 69 widened by a tenth of the span
    assert section["ranges"]["balance"]["min"] == 0  # no negative seen: none allowed
    assert section["categories"] == {"plan": ["basic", "pro", "team"]}
    assert section["nullable"] == ["balance"]
    assert section["booleans"] == {"true_values": [1, "yes"], "false_values": [0, "no"]}
    assert result.left_out == ["note"] and section["unexpected_columns"] == "ignore"
    reasons = dict(result.reasons)
    assert reasons["left"].startswith("target: positive 'left' (the minority, 25.0% of rows")
    assert reasons["note"].startswith("left out: free text (400 distinct values")
    assert set(reasons) >= set(frame().columns)  # one line per column


def test_what_is_given_wins_over_the_guess(source):
    section = drafted(source, positive="stayed", id_column="account_id", no_timestamp=True).section
    assert section["target"]["positive"] == "stayed" and section["timestamp"] is None
    assert "signed_up" not in section["columns"]["categorical"]  # dates are left out, not levels


def test_an_id_that_is_not_unique_complete_text_or_integers_is_refused(source):
    with pytest.raises(DraftError, match="--id 'plan' is not unique and complete"):
        drafted(source, id_column="plan")
    inferred, text = read_source(source, "csv")
    ratio = [i / 3 for i in range(len(inferred))]  # unique and complete, but floats
    with pytest.raises(DraftError, match="--id 'ratio' holds float64 values; ids must be text or integers"):
        draft(
            inferred.assign(ratio=ratio),
            text.assign(ratio=[str(r) for r in ratio]),
            uri=source,
            target="left",
            name="a",
            id_column="ratio",
        )


def test_without_an_id_column_row_numbers_are_generated(tmp_path):
    path = tmp_path / "plain.csv"
    frame().drop(columns=["account_id"]).to_csv(path, index=False)
    section = drafted(str(path)).section
    assert section["id"] == {"column": "row_id", "generate": "row_number", "prefix": "R"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"left": ["a", "b", "c", "d"] * 100}, "has 4 distinct values ['a', 'b', 'c', 'd']; a binary target"),
        ({"left": [None] + ["x", "y"] * 199 + ["x"]}, "target 'left' is missing on 1 of 400 rows"),
    ],
)
def test_a_target_that_is_not_binary_is_refused_by_name(tmp_path, change, words):
    path = tmp_path / "bad.csv"
    frame().assign(**change).to_csv(path, index=False)
    with pytest.raises(DraftError, match=words.replace("[", r"\[").replace("]", r"\]")):
        drafted(str(path))


def test_ranges_are_rounded_outwards_with_a_margin():
    assert numeric_range(pd.Series([18.25, 118.75])) == {"min": 0, "max": 130}
    assert numeric_range(pd.Series([-5.0, 5.0])) == {"min": -6, "max": 6}
    assert numeric_range(pd.Series([3, 3])) == {"min": 2, "max": 4}


def test_the_rendered_section_loads_as_params_yaml_does(source):
    text = render(drafted(source), source)
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    params = parse_params({**shipped, "dataset": yaml.safe_load(text)["dataset"]})
    assert params.dataset.name == "accounts" and params.model_name == "accounts"
    assert "#   age" in text  # the reasons travel with the section


def test_into_params_replaces_only_the_dataset_section_and_keeps_the_old_file(tmp_path, source, capsys):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    before = params.read_text()
    assert main([source, "--target", "left", "--into-params", str(params)]) == 0
    after = params.read_text()
    assert (tmp_path / "params.yaml.bak").read_text() == before
    assert yaml.safe_load(after)["dataset"]["name"] == "accounts"
    keep = lambda text: text[text.index("\nfeatures:") :]  # noqa: E731 - every later section as written
    assert keep(after) == keep(before)
    assert "telco" not in after[: after.index("\nfeatures:")].lower()
    out = capsys.readouterr().out
    assert "account_id" in out and "id: unique and complete, named like an id" in out


def test_an_existing_out_file_is_not_overwritten(tmp_path, source, capsys):
    out = tmp_path / "dataset.yaml"
    out.write_text("mine")
    assert main([source, "--target", "left", "--out", str(out)]) == 1
    assert out.read_text() == "mine" and "exists" in capsys.readouterr().err
    assert main([source, "--target", "left", "--out", str(out), "--force"]) == 0
    assert yaml.safe_load(out.read_text())["dataset"]["id"] == {"column": "account_id"}


def test_replace_section_needs_a_dataset_section():
    with pytest.raises(DraftError, match="no top-level `dataset:` section"):
        replace_section("features: {}\n", "dataset: {}\n", "p.yaml")


def test_a_parquet_money_column_of_decimals_is_drafted_numeric_not_left_out_as_free_text(tmp_path):
    """decimal128(10, 2), as warehouses export money, was drafted "left out: free text (400 distinct values
    in 400 rows)"; the import and the data checks read it as float64 (ml/io.py decimals_as_float64)."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = frame().drop(columns=["balance"])
    table = pa.Table.from_pandas(rows, preserve_index=False).append_column(
        "balance", pa.array([Decimal(f"{10 + i * 2.37:.2f}") for i in range(len(rows))], pa.decimal128(10, 2))
    )
    path = tmp_path / "accounts.parquet"
    pq.write_table(table, path)
    inferred, text = read_source(str(path), "parquet")
    result = draft(inferred, text, uri=str(path), target="left", name="accounts")
    assert "balance" in result.section["columns"]["numeric"]
    assert result.section["ranges"]["balance"] == numeric_range(pd.Series([10 + i * 2.37 for i in range(400)]))
