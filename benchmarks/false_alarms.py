"""How often the drift verdict says "drift" on days that did not drift.

Days and references are drawn from one population, the shipped example data (disjoint rows where it
has enough, with replacement beyond), so every "drift" is a false alarm. The model's score is a fixed function of the features, so the
prediction column is as stable as the data. Prints the share of days that said drift per (day size,
reference size) and rule (the importance share, equal or skewed, without a model; the impact on a
stand-in model's scores); the goal is at most 5 % everywhere. `benchmarks.verdicts` does the same with
real models on real data sets.

    python -m benchmarks.false_alarms [--days 20] [--day-rows 100 1000 10000] [--reference-rows 200 2000 20000]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from ml.drift import drift_verdict, reference_profile
from ml.drift_impact import Predict
from ml.example_data import example_frame
from ml.ingest import with_ids
from ml.params import load_params
from ml.sources import as_text
from ml.spec import DatasetSpec

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def population() -> tuple[pd.DataFrame, DatasetSpec]:
    """The example data as the import writes it, with a stable score per row."""
    spec = load_params(ROOT / "params.yaml").dataset
    rows = with_ids(example_frame("telco_churn"), spec)
    for col in spec.text_columns:
        rows[col] = as_text(rows[col])
    rows["_score"] = stand_in_model(rows)
    return rows, spec


def stand_in_model(rows: pd.DataFrame) -> np.ndarray:
    """A fixed score per row from two columns (raw rows or profile frames alike): what the impact rule
    asks of a model."""
    tenure = pd.to_numeric(rows["tenure"], errors="coerce").fillna(0).to_numpy()
    charges = pd.to_numeric(rows["monthly_charges"], errors="coerce").fillna(0).to_numpy()
    return 1 / (1 + np.exp(0.05 * tenure - 0.03 * charges))


def sample(rows: pd.DataFrame, size: int, rng: np.random.Generator, spec: DatasetSpec) -> pd.DataFrame:
    """`size` rows: distinct rows when there are enough (as from a large population), else with replacement."""
    picked = rows.iloc[rng.choice(len(rows), size, replace=size > len(rows))].reset_index(drop=True)
    picked[spec.id.column] = [f"S{i:08d}" for i in rng.permutation(size)]  # distinct ids
    return picked


def false_alarm_rate(
    rows: pd.DataFrame,
    spec: DatasetSpec,
    *,
    day_rows: int,
    reference_rows: int,
    days: int,
    drift_share: float,
    importance: dict[str, float] | None,
    seed: int,
    predict: Predict | None = None,
) -> tuple[float, list[str]]:
    """The share of same-distribution days whose verdict is drift, and what drifted on those days."""
    rng = np.random.default_rng(seed)
    # The reference and the days come from disjoint rows where the population allows it.
    order = rng.permutation(len(rows))
    split = min(reference_rows, len(rows) // 2)
    ref_rows = sample(rows.iloc[order[:split]], reference_rows, rng, spec)
    rows = rows.iloc[order[split:]]
    reference = reference_profile(ref_rows, ref_rows["_score"].to_numpy(), spec, reference_rows, seed)
    alarms, what = 0, []
    for _ in range(days):
        day = sample(rows, day_rows, rng, spec)
        current = reference_profile(day, day["_score"].to_numpy(), spec, day_rows, seed)
        result = drift_verdict(
            reference, current, spec, drift_share=drift_share, importance=importance, seed=seed, predict=predict
        )
        if result.verdict == "drift":
            alarms += 1
            what.append(f"{'+'.join(result.rules)}: {','.join(result.drifted_columns) or '-'}")
    return alarms / days, what


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--day-rows", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--reference-rows", type=int, nargs="+", default=[200, 2000, 20000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows, spec = population()
    settings = load_params(ROOT / "params.yaml").drift
    # One column carrying most of the importance: the weighting at its most sensitive; and the stand-in
    # model's scores, so the impact rule decides as it does every night.
    skewed = {c: (0.5 if c == "contract" else 0.5 / (len(spec.feature_columns) - 1)) for c in spec.feature_columns}
    variants = (("equal", None, None), ("one column 0.5", skewed, None), ("the model's impact", None, stand_in_model))
    print("| day rows | reference rows | rule | days | said drift | rules: drifted |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for day_rows in args.day_rows:
        for reference_rows in args.reference_rows:
            for name, importance, predict in variants:
                started = time.perf_counter()
                rate, what = false_alarm_rate(
                    rows,
                    spec,
                    day_rows=day_rows,
                    reference_rows=reference_rows,
                    days=args.days,
                    drift_share=settings.drift_share,
                    importance=importance,
                    seed=args.seed,
                    predict=predict,
                )
                worst = max(worst, rate)
                print(
                    f"| {day_rows} | {reference_rows} | {name} | {args.days} | {rate:.0%} | {'; '.join(what[:3])} |",
                    flush=True,
                )
                print(f"  {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"\nworst false-alarm rate {worst:.0%} (goal: at most 5%): {'met' if worst <= 0.05 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
