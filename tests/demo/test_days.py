"""The demo's days end yesterday, and `make next-day` carries its stream on by one day."""

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd

from demo.__main__ import demo_start
from demo.next_day import main as next_day
from ml.params import load_params
from ml.simulate import simulate_day, unseen_rows, write_labels, write_snapshot
from tests.conftest import REPO


def test_the_demo_days_end_yesterday_and_never_start_before_the_partitions():
    start = demo_start(dt.date(2026, 10, 1), 30, today=dt.date(2026, 12, 2))
    assert start == dt.date(2026, 11, 2) and start + dt.timedelta(days=29) == dt.date(2026, 12, 1)
    assert demo_start(dt.date(2026, 10, 1), 30, today=dt.date(2026, 10, 20)) == dt.date(2026, 10, 1)


def test_next_day_writes_the_next_snapshot_and_the_delayed_labels_of_the_demo_stream(
    tmp_path: Path, telco_raw: pd.DataFrame, capsys
):
    root = tmp_path / "project"
    (root / "data" / "raw").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    telco_raw.to_parquet(root / "data" / "raw" / "data.parquet", index=False)
    params = load_params(root / "params.yaml")
    stream = unseen_rows(telco_raw, params)  # what the demo's nights draw from (demo/story.py)
    daily = params.daily.model_copy(update={"start_date": dt.date(2026, 11, 2)})  # a demo that ended on 11-05
    for number in range(1, 5):
        write_snapshot(simulate_day(stream, params.dataset, params.simulation, number)[0], daily, number, root)
    write_labels(simulate_day(stream, params.dataset, params.simulation, 1)[1], daily, 1, root)

    assert next_day(root) == 0
    snapshot, _ = simulate_day(stream, params.dataset, params.simulation, 5)
    _, labels = simulate_day(stream, params.dataset, params.simulation, 2)
    pd.testing.assert_frame_equal(pd.read_parquet(root / "data" / "incoming" / "2026-11-06.parquet"), snapshot)
    pd.testing.assert_frame_equal(pd.read_parquet(root / "data" / "labels" / "2026-11-03.parquet"), labels)
    # the labels name the customers scored that day, so label_feedback can join them to the predictions
    scored = pd.read_parquet(root / "data" / "incoming" / "2026-11-03.parquet")
    written = pd.read_parquet(root / "data" / "labels" / "2026-11-03.parquet")
    assert set(written[params.dataset.id.column]) == set(scored[params.dataset.id.column])
    out = capsys.readouterr().out
    assert "day 5 (2026-11-06)" in out and "labels of day 2 (2026-11-03)" in out
