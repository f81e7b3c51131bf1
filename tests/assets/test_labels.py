"""A labels file is refused, by name, when it cannot be joined to its day or has unknown labels."""

import dagster as dg
import pandas as pd
import pytest

from assets.labels import check_labels


def test_good_labels_pass(spec):
    check_labels(pd.DataFrame({"customer_id": ["C1", "C2"], "churn": ["Yes", "No"]}), spec, "day.parquet")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"customer_id": ["C1"]}), r"day.parquet: missing columns \['churn'\]"),
        (pd.DataFrame({"customer_id": ["C1", "C1"], "churn": ["Yes", "No"]}), r"ids appear twice, e.g. \['C1'\]"),
        (pd.DataFrame({"customer_id": ["C1"], "churn": ["maybe"]}), r"column 'churn' has values \['maybe'\]"),
    ],
)
def test_bad_labels_are_named(spec, frame, message):
    with pytest.raises(dg.Failure, match=message):
        check_labels(frame, spec, "day.parquet")
