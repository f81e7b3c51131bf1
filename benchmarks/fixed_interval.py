"""What each retrain learns, apart from when it happens: the project's candidate selection (its windows,
the choice between them and the gate) on a fixed calendar, against the weekly and daily calendars that
always train on the latest 28 days.

    python -m benchmarks.fixed_interval --stream flights|cdnow [--every 21] [--days N] [--offset K]
        [--change-night N [--change-share 0.5] [--change-column COL]] [--episode-at-change]
        [--windows JSON] [--label-delay 3]

Every `--every` nights the project's selection retrains: the labelled days it would load
(retraining.window_days), the evaluation days and windows of ml/windows.py and assets/training_set.py,
the choice of ml/windows.choose, and the gate of ml/gate.py against the model serving. The fewer
retrains of a drift trigger pay off only when each of them yields a model that is better and stays good
longer than a weekly 28-day model: this measures that alone. `--offset` starts the stream K days later
(a start date the defaults were not tuned on); `--episode-at-change` gives the retrains after an
injected change the change's day as their episode's start, as the sensor does when the change opens
the episode; `--windows` replaces retraining.windows (a JSON list of windows) to compare choices.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from benchmarks.baselines import Policy, replay_policy
from benchmarks.replay import DAY_COLUMN
from benchmarks.retraining import RAW_DAYS, STREAMS, Change, _params, inject_change
from ml.baseline import best_single_column
from ml.features import encode_target, fit_features, transform
from ml.gate import versus_champion
from ml.models import fit_model
from ml.params import Params, TrainingWindow
from ml.windows import WindowDays, candidate_windows, choose, day_weights, evaluation_days

Scorer = Callable[[pd.DataFrame], np.ndarray]
AFTER_CHANGE_DAYS = 30


def fit(rows: pd.DataFrame, weights: np.ndarray | None, params: Params) -> Scorer:
    """The project's feature code and model family fitted on the rows (weighted when given)."""
    spec, config = params.dataset, params.training.resolve()
    state = fit_features(rows, spec, params.features)
    model = fit_model(
        config.model,
        transform(rows, state),
        encode_target(rows, spec).to_numpy(),
        config.hyperparameters,
        config.seed,
        sample_weight=weights,
    )
    return lambda frame: model.predict(transform(frame, state))


def window_weights(window: WindowDays, raw: pd.DataFrame, by_day: dict[str, pd.DataFrame]) -> np.ndarray | None:
    """The window's row weights in the order of its rows (the raw rows first), as candidate_model gives them."""
    if window.half_life_days is None:
        return None
    weight_of = day_weights(window.days, window.half_life_days)
    return np.concatenate(
        ([np.ones(len(raw))] if window.raw else []) + [np.full(len(by_day[d]), weight_of[d]) for d in window.days]
    )


def select(
    by_day: dict[str, pd.DataFrame],
    raw: pd.DataFrame,
    labelled: list[str],
    champion: Scorer,
    params: Params,
    episode_start: str | None = None,
    refit: bool = False,
) -> tuple[Scorer | None, dict]:
    """One retrain under the project's selection: the windows' candidates, the winner, the gate.

    Returns the new model when the gate passed it, and what happened (the window, why, the gate's reason).
    """
    spec, gate = params.dataset, params.gate
    days = labelled[-params.retraining.window_days :]
    evaluation = evaluation_days({d: len(by_day[d]) for d in days}, gate.min_rows, episode_start)
    # The episode here is an injected change of the relation (--episode-at-change): as after a collapse.
    before = [d for d in days if d not in evaluation]
    windows = candidate_windows(
        params.retraining.windows, before, episode_start, relation_changed=episode_start is not None
    )
    holdout = pd.concat([by_day[d] for d in evaluation], ignore_index=True)
    labels = encode_target(holdout, spec).to_numpy()
    models, scores = {}, {}
    for window in windows:
        frames = ([raw] if window.raw else []) + [by_day[d] for d in window.days]
        models[window.name] = fit(pd.concat(frames, ignore_index=True), window_weights(window, raw, by_day), params)
        scores[window.name] = models[window.name](holdout)
    chosen, why, aucs = choose(labels, scores, confidence=gate.confidence, resamples=gate.resamples, seed=gate.seed)
    union = pd.concat(
        ([raw] if any(w.raw for w in windows) else []) + [by_day[d] for d in days if d not in evaluation],
        ignore_index=True,
    )
    _, baseline = best_single_column(union, holdout, spec)
    decision = versus_champion(
        labels,
        scores[chosen],
        champion(holdout),
        gate,
        candidate_auc=aucs[chosen],
        min_auc=baseline + gate.baseline_margin if gate.min_auc == "auto" else float(gate.min_auc),
        champion_version=0,
    )
    entry = {
        "evaluation": f"{evaluation[0]}..{evaluation[-1]} ({len(holdout)} rows)",
        "windows": {w.name: w.describe() for w in windows},
        "aucs": aucs,
        "window": chosen,
        "why": why,
        "passed": decision.passed,
        "gate": decision.reason,
    }
    if decision.passed and refit:
        # An experiment, not what the project does: the chosen window once more, its days now with the
        # evaluation days (the newest, which the gated model did not learn from).
        window = next(w for w in windows if w.name == chosen)
        window = window.model_copy(update={"days": window.days + evaluation})
        frames = ([raw] if window.raw else []) + [by_day[d] for d in window.days]
        models[chosen] = fit(pd.concat(frames, ignore_index=True), window_weights(window, raw, by_day), params)
    return (models[chosen] if decision.passed else None), entry


def replay_fixed(
    rows: pd.DataFrame,
    raw_days: list[str],
    days: list[str],
    label_delay: int,
    every: int,
    params: Params,
    change_day: str | None = None,
    refit: bool = False,
) -> dict:
    """Score `days` in order; every `every` nights the project's selection retrains on the labelled days."""
    spec = params.dataset
    by_day = {d: frame.drop(columns=DAY_COLUMN).reset_index(drop=True) for d, frame in rows.groupby(DAY_COLUMN)}
    raw = pd.concat([by_day[d] for d in raw_days], ignore_index=True)
    model = fit(raw, None, params)
    aucs, retrains = [], []
    for number, day in enumerate(days, start=1):
        if number > 1 and (number - 1) % every == 0:
            labelled = days[: max(0, number - 1 - label_delay)]  # as benchmarks/baselines.py
            start = change_day if change_day is not None and labelled and labelled[-1] >= change_day else None
            new, entry = select(by_day, raw, labelled, model, params, start, refit)
            retrains.append({"night": number, **entry})
            model = new or model
        today = by_day[day]
        aucs.append(float(roc_auc_score(encode_target(today, spec).to_numpy(), model(today))))
    return {
        "policy": f"every {every} nights, the project's selection"
        + (", refit with the evaluation days" if refit else ""),
        "aucs": aucs,
        "mean_auc": float(np.mean(aucs)),
        "retrains": len(retrains),
        "log": retrains,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fixed_interval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", choices=sorted(STREAMS), default="flights")
    parser.add_argument("--every", type=int, default=21, help="nights between two retrains of the project's selection")
    parser.add_argument("--days", type=int, default=50, help="nights after the raw days")
    parser.add_argument("--offset", type=int, default=0, help="start the stream this many days later")
    parser.add_argument("--label-delay", type=int, default=3)
    parser.add_argument("--change-night", type=int, default=None)
    parser.add_argument("--change-share", type=float, default=0.5)
    parser.add_argument("--change-column", default=None)
    parser.add_argument(
        "--episode-at-change",
        action="store_true",
        help="retrains after the change get its day as their episode's start",
    )
    parser.add_argument("--windows", default=None, help="retraining.windows as a JSON list (default: params.yaml's)")
    parser.add_argument(
        "--refit", action="store_true", help="an experiment: the gated window refitted with the evaluation days"
    )
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument(
        "--cache", type=Path, default=None, help="a folder keeping the stream and the calendars' results between runs"
    )
    args = parser.parse_args(argv)
    stream = STREAMS[args.stream]
    stored = args.cache / f"{args.stream}.parquet" if args.cache else None
    if stored is not None and stored.exists():
        rows = pd.read_parquet(stored)
    else:
        rows = stream.load()
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            rows.to_parquet(stored, index=False)
    params = _params(stream, args.label_delay, "auto")
    if args.windows:
        windows = [TrainingWindow(**w) for w in json.loads(args.windows)]
        params = params.model_copy(update={"retraining": params.retraining.model_copy(update={"windows": windows})})
    raw_days = [stream.day_of(args.offset + i) for i in range(RAW_DAYS)]
    days = [stream.day_of(args.offset + RAW_DAYS + i) for i in range(args.days)]
    rows = rows[rows[DAY_COLUMN].isin(raw_days + days)]
    change_day, text = None, ""
    if args.change_night:
        # inject_change counts nights from the stream's own start; shift by the offset.
        change = Change(args.change_night + args.offset, args.change_share, args.change_column)
        rows, text = inject_change(rows, stream, change)
        change_day = days[args.change_night - 1] if args.episode_at_change else None
    print(f"{stream.title}: raw {raw_days[0]}..{raw_days[-1]}, nights {days[0]}..{days[-1]}; {text}", file=sys.stderr)
    results = [replay_fixed(rows, raw_days, days, args.label_delay, args.every, params, change_day, args.refit)]
    for entry in results[0]["log"]:
        print(
            f"night {entry['night']}: eval {entry['evaluation']}; {entry['window']} "
            f"({', '.join(f'{k} {v:.4f}' for k, v in entry['aucs'].items())}); gate {entry['gate']}",
            file=sys.stderr,
        )
    if not args.skip_baselines:
        # The calendars do not depend on the selection: kept between runs of the same days and change.
        key = f"{args.stream}-{args.days}-{args.offset}-{args.label_delay}-{text}".replace("/", "_")
        cached = args.cache / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json" if args.cache else None
        if cached is not None and cached.exists():
            results += json.loads(cached.read_text(encoding="utf-8"))
        else:
            policies = (Policy("weekly, 28-day window", 7, 28), Policy("daily, 28-day window", 1, 28))
            calendars = [replay_policy(p, rows, raw_days, days, args.label_delay, params) for p in policies]
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps(calendars), encoding="utf-8")
            results += calendars
    print(f"## {stream.title}, {args.days} nights from {days[0]}" + (f"; {text}" if text else ""))
    for row in results:
        line = f"{row['policy']}: mean daily AUC {row['mean_auc']:.4f}, {row['retrains']} retrains"
        if args.change_night:
            after = row["aucs"][args.change_night - 1 : args.change_night - 1 + AFTER_CHANGE_DAYS]
            line += f"; the {len(after)} days from the change {np.mean(after):.4f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
