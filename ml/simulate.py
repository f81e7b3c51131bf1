"""A simulated daily stream for the shipped example: customer snapshots per day, labels arriving later.

    python -m ml.simulate --params params.yaml --raw data/raw/data.parquet [--days N]

Day d (1 = `daily.start_date`) is a sample of `rows_per_day` customers drawn without replacement
from the raw data's holdout rows (`unseen_rows`: the customers no model trains on, so a day's AUC
is measured out of sample), so ids are stable (a customer keeps its id on every day it appears) and the
columns follow the raw distribution. From `scenario.from_day` on, a named drift scenario changes
the rows and the labels. The snapshot goes to `daily.incoming` (the spec's columns without the
target), the true labels to `daily.labels` (id and target): real labels arrive later, which the demo
plays by delivering them `label_delay_days` after their day. Every day has its own seeded random
stream, so the same seed gives the same files whatever order or subset of days is written.

Users with real daily files skip this module: point `daily.incoming` / `daily.labels` at them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ml import io
from ml.params import DailySection, Params, PriceRise, SimulationSection, load_params
from ml.spec import DatasetSpec
from ml.split import HOLDOUT, side, split_rows


class SimulationError(ValueError):
    """The simulation settings and the raw data do not fit together; the message names the key."""


def check_scenario(spec: DatasetSpec, config: SimulationSection) -> None:
    """The scenario's column must be a numeric column of the data set being simulated."""
    scenario = config.scenario
    if isinstance(scenario, PriceRise) and scenario.column not in spec.columns.numeric:
        raise SimulationError(
            f"params.yaml: simulation.scenario.column {scenario.column!r} is not a numeric column of the dataset "
            f"spec (numeric columns: {', '.join(spec.columns.numeric) or 'none'}); the shipped scenario belongs to "
            "the example data: set simulation.scenario.name to none, or name one of your numeric columns"
        )


def _with_scenario(
    rows: pd.DataFrame, raw: pd.DataFrame, spec: DatasetSpec, scenario: PriceRise, rng: np.random.Generator
) -> pd.DataFrame:
    rows = rows.copy()
    column = scenario.column
    raised = rows[column] * scenario.factor
    bounds = spec.ranges.get(column)
    if bounds is not None and bounds.max is not None:
        raised = raised.clip(upper=bounds.max)  # a simulated price stays a valid price
    rows[column] = raised.round(2)
    # Customers the rise pushes into the raw data's upper prices leave more often than before.
    cutoff = raw[column].quantile(scenario.churn_above_quantile)
    exposed = (rows[column] > cutoff).to_numpy()
    leaves = exposed & (rng.random(len(rows)) < scenario.churn_extra_rate)
    rows.loc[leaves, spec.target.column] = spec.target.positive
    return rows


def unseen_rows(raw: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The raw rows on the holdout side of the training split: customers no model is trained on."""
    training = params.training
    return side(split_rows(raw, params.dataset, fraction=training.holdout_fraction, seed=training.seed), HOLDOUT)


def simulate_day(
    raw: pd.DataFrame, spec: DatasetSpec, config: SimulationSection, day: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(snapshot without the target, labels) for day `day` (1-based)."""
    check_scenario(spec, config)
    if config.rows_per_day > len(raw):
        raise SimulationError(
            f"params.yaml: simulation.rows_per_day is {config.rows_per_day} but there are only "
            f"{len(raw)} customers to draw from (the raw data's holdout rows)"
        )
    rng = np.random.default_rng([config.seed, day])
    picked = np.sort(rng.choice(len(raw), size=config.rows_per_day, replace=False))
    rows = raw.iloc[picked].reset_index(drop=True)
    scenario = config.scenario
    if isinstance(scenario, PriceRise) and day >= scenario.from_day:
        rows = _with_scenario(rows, raw, spec, scenario, rng)
    snapshot = rows[spec.expected_columns(include_target=False)]
    labels = rows[[spec.id.column, spec.target.column]]
    return snapshot, labels


def write_snapshot(snapshot: pd.DataFrame, daily: DailySection, day: int, root: str | Path | None = None) -> str:
    uri = daily.incoming_uri(daily.date(day), root)
    io.write_parquet(snapshot, uri)
    return uri


def write_labels(labels: pd.DataFrame, daily: DailySection, day: int, root: str | Path | None = None) -> str:
    uri = daily.labels_uri(daily.date(day), root)
    io.write_parquet(labels, uri)
    return uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="YAML file with `dataset`, `daily`, `simulation`")
    parser.add_argument("--raw", required=True, help="raw Parquet file to draw customers from")
    parser.add_argument("--days", type=int, default=None, help="write days 1..N (default: simulation.days)")
    args = parser.parse_args(argv)
    root = Path(args.params).resolve().parent
    try:
        params = load_params(args.params)
        spec, daily, config = params.dataset, params.daily, params.simulation
        raw = unseen_rows(io.read_parquet(io.resolve(args.raw, root)), params)
        days = args.days or config.days
        for day in range(1, days + 1):
            snapshot, labels = simulate_day(raw, spec, config, day)
            write_snapshot(snapshot, daily, day, root)
            write_labels(labels, daily, day, root)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"simulated {days} days of {config.rows_per_day} rows from {daily.date(1)} ({config.scenario.name} scenario)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
