"""The rows a window trains on, as candidate_model and the card select them from the training set."""

import pandas as pd

from assets.candidate_model import window_rows
from assets.training_set import DAY_COLUMN, RAW_DAY
from ml.split import HOLDOUT, SPLIT, TRAIN
from ml.windows import WindowDays

RAW_DAYS = ["2026-09-29", "2026-09-30"]


def table() -> pd.DataFrame:
    days = [RAW_DAY, "2026-09-29", "2026-09-30", "2026-10-01", "2026-10-02", "2026-10-03"]
    return pd.DataFrame(
        {
            "id": [f"r{n}" for n in range(len(days))],
            DAY_COLUMN: days,
            SPLIT: [TRAIN] * 5 + [HOLDOUT],  # 10-03: the evaluation day
        }
    )


def test_a_window_reaching_into_the_raw_days_trains_on_the_raw_rows_of_those_dates():
    window = WindowDays(name="recent", days=["2026-09-30", "2026-10-01", "2026-10-02"], raw=False, raw_days=1)
    assert window_rows(table(), window, RAW_DAYS)["id"].tolist() == ["r2", "r3", "r4", "r5"]


def test_a_raw_window_takes_every_raw_row_dated_or_not_and_weighs_the_labelled_days_alone():
    window = WindowDays(name="raw_and_long", days=["2026-10-01", "2026-10-02"], raw=True)
    assert window_rows(table(), window, RAW_DAYS)["id"].tolist() == ["r0", "r1", "r2", "r3", "r4", "r5"]
    weighted = WindowDays(name="w", days=["2026-09-30", "2026-10-01"], raw=False, half_life_days=1, raw_days=1)
    rows = window_rows(table(), weighted, RAW_DAYS)
    assert rows["id"].tolist() == ["r2", "r3", "r5"]
    assert rows["weight"].tolist()[:2] == [0.5, 1.0]  # a raw day is weighed by its age like any day
