"""The daily simulator: stable ids, the raw distribution before the scenario, the named shift after, and
the same files for the same seed."""

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ml.params import ParamsError, parse_params
from ml.simulate import SimulationError, simulate_day
from tests.conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def config(spec, **changes):
    return parse_params({**PARAMS, "simulation": {**PARAMS["simulation"], **changes}}).simulation


def daily_config(document):
    return parse_params({**PARAMS, **document}).daily


def test_days_are_seeded_samples_of_raw_customers_with_their_ids(spec, telco_raw):
    simulation = config(spec)
    snapshot, labels = simulate_day(telco_raw, spec, simulation, 3)
    again, _ = simulate_day(telco_raw, spec, simulation, 3)
    other, _ = simulate_day(telco_raw, spec, simulation, 4)
    assert snapshot.equals(again) and not snapshot.equals(other)
    assert list(snapshot.columns) == spec.expected_columns(include_target=False)
    assert list(labels.columns) == [spec.id.column, spec.target.column]
    assert snapshot[spec.id.column].is_unique and len(snapshot) == simulation.rows_per_day
    # Before the scenario a customer's row is its raw row, under its raw id.
    raw = telco_raw.set_index(spec.id.column)
    picked = raw.loc[snapshot[spec.id.column], spec.feature_columns].reset_index(drop=True)
    assert picked.equals(snapshot[spec.feature_columns].reset_index(drop=True))


def test_the_price_rise_moves_the_column_and_the_churn_from_its_first_day(spec, telco_raw):
    simulation = config(spec)
    scenario = simulation.scenario
    before, before_labels = simulate_day(telco_raw, spec, simulation, scenario.from_day - 1)
    after, after_labels = simulate_day(telco_raw, spec, simulation, scenario.from_day)
    raw_mean = telco_raw[scenario.column].mean()
    assert before[scenario.column].mean() == pytest.approx(raw_mean, rel=0.05)
    assert after[scenario.column].mean() == pytest.approx(raw_mean * scenario.factor, rel=0.05)

    def churn(labels):
        return (labels[spec.target.column] == spec.target.positive).mean()

    assert churn(after_labels) > churn(before_labels) + 0.08
    unchanged = [c for c in spec.feature_columns if c != scenario.column]
    raw = telco_raw.set_index(spec.id.column)
    assert raw.loc[after[spec.id.column], unchanged].reset_index(drop=True).equals(after[unchanged])


def test_bad_settings_name_the_key(spec):
    # Loading params.yaml does not judge the scenario (only the example is simulated); simulating does.
    misnamed = config(spec, scenario={**PARAMS["simulation"]["scenario"], "column": "tenur"})
    with pytest.raises(SimulationError, match="simulation.scenario.column 'tenur' is not a numeric column.*set "):
        simulate_day(__import__("pandas").DataFrame({"x": range(7043)}), spec, misnamed, 1)
    with pytest.raises(ParamsError, match=r"simulation.scenario.price_rise.factr: unknown key"):
        config(spec, scenario={**PARAMS["simulation"]["scenario"], "factr": 2})
    with pytest.raises(ParamsError, match=r"daily.incoming: .*must contain \{date\}"):
        daily_config({"daily": {**PARAMS["daily"], "incoming": "data/incoming/today.parquet"}})
    with pytest.raises(SimulationError, match="rows_per_day is 9000 but there are only 7043 customers to draw from"):
        simulate_day(__import__("pandas").DataFrame({"x": range(7043)}), spec, config(spec, rows_per_day=9000), 1)


def test_daily_dates_and_paths(spec):
    daily = daily_config(PARAMS)
    assert daily.date(1) == dt.date.fromisoformat(PARAMS["daily"]["start_date"])
    assert daily.day(daily.date(15)) == 15
    assert daily.incoming_uri("2026-10-02", "/p") == "/p/data/incoming/2026-10-02.parquet"


def test_the_dvc_stage_command_writes_the_same_files_for_the_same_seed(tmp_path: Path, spec, telco_raw):
    root = tmp_path / "p"
    root.mkdir()
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    telco_raw.to_parquet(root / "raw.parquet", index=False)

    def simulate() -> dict[str, str]:
        cmd = [sys.executable, "-m", "ml.simulate", "--params", str(root / "params.yaml"), "--raw", "raw.parquet"]
        out = subprocess.run([*cmd, "--days", "3"], cwd=REPO, capture_output=True, text=True, check=True)
        assert "simulated 3 days of 1000 rows from 2026-10-01" in out.stdout
        files = sorted((root / "data").rglob("*.parquet"))
        return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

    first = simulate()
    assert sorted(first) == [f"data/{kind}/2026-10-0{d}.parquet" for kind in ("incoming", "labels") for d in (1, 2, 3)]
    assert simulate() == first


def test_simulated_days_come_from_rows_no_model_trains_on(spec, telco_raw):
    """The daily AUC is out of sample: every simulated customer is on the holdout side of the split."""
    from ml.params import load_params
    from ml.simulate import unseen_rows
    from ml.split import HOLDOUT, assign_split

    params = load_params(REPO / "params.yaml")
    unseen = unseen_rows(telco_raw, params)
    snapshot, _ = simulate_day(unseen, spec, params.simulation, 1)
    sides = assign_split(telco_raw, spec, fraction=params.training.holdout_fraction, seed=params.training.seed)
    holdout_ids = set(telco_raw.loc[sides == HOLDOUT, spec.id.column])
    assert set(snapshot[spec.id.column]) <= holdout_ids and len(snapshot) == params.simulation.rows_per_day
