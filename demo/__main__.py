"""The demo on the embedded defaults: `make demo` (or `python -m demo`).

The whole lifecycle, against the Dagster instance in $DAGSTER_HOME (var/dagster) so that `make ui`
afterwards shows its history: import and version the raw data (DVC), check it (GX), train, gate and
register a champion (MLflow, var/mlflow); then 30 simulated nights (params.yaml `simulation:`, a
price rise from day 15) that end yesterday, so the nightly schedule and the sensors carry on from
today (`make next-day` adds the next day). Each night the day's snapshot file arrives and the nightly scoring job
checks, scores and drift-reports it; labels arrive `label_delay_days` later. After each night the
demo evaluates the two sensors, as the Dagster daemon would, and runs what they ask for: the labels
and performance of arrived days, and a retrain when drift is detected. It ends with a table per day.

The story starts from scratch every time: the demo clears its own state under var/ first (the
Dagster history, MLflow store, artifacts and the simulated daily files), never anything else.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg

from demo.story import Night, launch, run_nights
from ml.params import load_params
from orchestration.deployments import PROJECT_ROOT, resources_for
from orchestration.history import latest_metadata

VAR = PROJECT_ROOT / "var"


def reset_state(home: Path) -> list[str]:
    """Remove what a previous demo left: Dagster history (not dagster.yaml), MLflow, artifacts, daily files."""
    if VAR not in home.resolve().parents:
        raise SystemExit(f"DAGSTER_HOME={home} is outside {VAR}; the demo only resets its own state. Use `make demo`.")
    removed = []
    for entry in home.iterdir():
        if entry.name != "dagster.yaml":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(str(entry.relative_to(PROJECT_ROOT)))
    for folder in (VAR / "mlflow", VAR / "storage"):
        if folder.exists():
            shutil.rmtree(folder)
            removed.append(str(folder.relative_to(PROJECT_ROOT)))
    daily = load_params(PROJECT_ROOT / "params.yaml").daily
    for template in (daily.incoming_uri("{date}", PROJECT_ROOT), daily.labels_uri("{date}", PROJECT_ROOT)):
        pattern = Path(template)
        if PROJECT_ROOT not in pattern.parents:  # real daily files elsewhere are never the demo's to delete
            raise SystemExit(
                f"daily files at {template} are outside the project; the demo simulates into the project only"
            )
        for file in pattern.parent.glob(pattern.name.replace("{date}", "*")):
            file.unlink()
        removed.append(str(pattern.relative_to(PROJECT_ROOT)).replace("{date}", "*"))
    return removed


def demo_start(daily_start: dt.date, days: int, today: dt.date | None = None) -> dt.date:
    """The first simulated day, so that the last one is yesterday (UTC); never before daily.start_date,
    where the daily partitions begin."""
    today = today or dt.datetime.now(dt.UTC).date()
    return max(daily_start, today - dt.timedelta(days=days))


def train_champion(defs: dg.Definitions, instance) -> bool:
    from assets.registered_model import registered_model

    print("Training the first champion: raw data (DVC) + GX checks -> training set -> candidate -> gate -> MLflow ...")
    result = launch(defs, "train_model", instance)
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            print(f"  check {check.asset_key.to_user_string()}/{check.check_name} FAILED")
    if not result.success:
        print("The training run failed: see the errors above, or the run in the UI.")
        return False
    registered = latest_metadata(instance, registered_model.key)
    print(f"  {registered['model']} v{registered['version']} is champion (holdout ROC AUC {registered['roc_auc']:.4f})")
    return True


def print_night(number: int, night: Night) -> None:
    print(
        f"  night {number:2d} {night.day}: scored by v{night.version}, {night.verdict}"
        + (f" (share {night.drift_share:.2f})" if night.drift_share is not None else "")
        + (f"  <- {'; '.join(night.events)}" if night.events else ""),
        flush=True,
    )


def print_table(instance, nights: list[Night]) -> None:
    from assets.model_performance import model_performance

    print("\n== Per day ==")
    print(f"{'day':<11} {'model':>5} {'drift share':>11}  {'verdict':<9} {'AUC':>7}  drifted columns / events")
    for night in nights:
        auc = latest_metadata(instance, model_performance.key, night.day).get("roc_auc")
        notes = ", ".join(night.drifted) + (" | " if night.drifted and night.events else "") + "; ".join(night.events)
        version = f"v{night.version}" if night.version else "-"
        share = f"{night.drift_share:.2f}" if night.drift_share is not None else "-"
        auc_text = f"{auc:.3f}" if auc is not None else "not yet"
        print(f"{night.day:<11} {version:>5} {share:>11}  {night.verdict:<9} {auc_text:>7}  {notes}")


def main() -> int:
    if "DAGSTER_HOME" not in os.environ:
        print("DAGSTER_HOME is not set; run the demo with `make demo`", file=sys.stderr)
        return 2
    started = time.monotonic()
    removed = reset_state(Path(os.environ["DAGSTER_HOME"]))
    print(f"Starting a fresh story (cleared {', '.join(removed)})")
    from orchestration.definitions import defs

    instance = dg.DagsterInstance.get()
    if not train_champion(defs, instance):
        return 1
    params = load_params(PROJECT_ROOT / "params.yaml")
    simulation, scenario = params.simulation, params.simulation.scenario
    start = demo_start(params.daily.start_date, simulation.days)
    print(
        f"\nSimulating {simulation.days} nights from {start} to {start + dt.timedelta(days=simulation.days - 1)}: "
        f"{simulation.rows_per_day} customers a day, labels {simulation.label_delay_days} days later, "
        f"scenario {scenario.name}" + (f" from day {scenario.from_day}" if scenario.name != "none" else "")
    )
    print("(the demo ticks the sensors after each night, as the Dagster daemon would)")
    nights = run_nights(PROJECT_ROOT, defs, instance, resources_for(), on_night=print_night, start_date=start)
    print_table(instance, nights)
    resources_for()["dvc"].run("push")
    print(f"\nDVC pushed the versioned raw data to the local remote ({VAR / 'dvc-remote'}).")
    print(f"Done in {time.monotonic() - started:.0f}s.")
    print("Open the UI on this history:  make ui   ->  http://127.0.0.1:3000")
    print("  Assets (lineage, partitions of batch_predictions / drift_report), Runs (the sensor's retrain),")
    print("  Automation (the nightly schedule and the sensors; turn them on to run them yourself:")
    print("  make automation-on, then make next-day delivers one more day and the labels of 3 days ago).")
    print("MLflow UI on the registry:    make mlflow -> http://127.0.0.1:5000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
