import pandas as pd

from ml.profile import column_profile


def test_profile_summarises_numbers_and_text():
    frame = pd.DataFrame({"n": [1.0, None, 3.5], "c": ["a", "b", "a"], "flag": [True, False, True]})
    rows = {r["column"]: r for r in column_profile(frame)}
    assert rows["n"] == {
        "column": "n",
        "type": "float64",
        "missing": 1,
        "distinct": 2,
        "range_or_top_values": "1 .. 3.5",
    }
    assert rows["c"]["range_or_top_values"] == "a (2), b (1)"
    assert rows["flag"]["range_or_top_values"] == "True (2), False (1)"


def test_profile_of_an_empty_column():
    rows = column_profile(pd.DataFrame({"n": pd.Series([], dtype="float64")}))
    assert rows == [{"column": "n", "type": "float64", "missing": 0, "distinct": 0, "range_or_top_values": ""}]
