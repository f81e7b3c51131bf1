"""The project's retraining rules called in-process, without Dagster runs: a faster approximation of the
replay (benchmarks/replay.py), for streams too long to replay through the real machinery each time.

It calls the project's own functions for every decision: ml.features and ml.models to train,
ml.windows for the evaluation days, the raw data's days, the windows, the lagged windows that choose
and the winner, orchestration.retrain_policy.training_set_config for what a request asks of them,
ml.baseline and ml.gate (the paired bootstrap) for the gate, ml.drift.drift_verdict against the
version's reference profile with its column importance for the nightly verdict,
ml.evaluation.auc_standard_error for a labelled day's AUC, and orchestration.retrain_policy
(observe / decide) for when to retrain. What it leaves out: Dagster runs, data checks, MLflow, the
artifact files, and the scorer's capture (the day's rows are sampled for the verdict by the same
seeded id hash). Its figures are labelled as in-process wherever they are printed.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from benchmarks.fixed_interval import window_weights
from ml.baseline import best_single_column
from ml.drift import drift_verdict, reference_profile
from ml.evaluation import auc_standard_error
from ml.features import encode_target, fit_features, transform
from ml.gate import versus_champion
from ml.models import fit_model
from ml.params import Params
from ml.predictor import column_importance
from ml.split import HOLDOUT, TRAIN, side, split_rows
from ml.windows import (
    candidate_windows,
    choice_gap,
    choose_window,
    evaluation_days,
    lagged_windows,
    raw_days,
    row_dates,
)
from orchestration.retrain_policy import Event, State, decide, observe, training_set_config

DAY = "day"


class Version:
    """A trained model with its feature state, importance per column and drift reference."""

    def __init__(
        self,
        number: int,
        train: pd.DataFrame,
        reference_rows: pd.DataFrame,
        params: Params,
        weights: np.ndarray | None = None,
    ) -> None:
        spec, config = params.dataset, params.training.resolve()
        self.number = number
        self.state = fit_features(train, spec, params.features)
        self.model = fit_model(
            config.model,
            transform(train, self.state),
            encode_target(train, spec).to_numpy(),
            config.hyperparameters,
            config.seed,
            sample_weight=weights,
        )
        self.importance = column_importance(self.state, self.model)
        self.reference = self.profile(reference_rows, params, params.drift.reference_rows)
        self.reached: float | None = None  # its AUC at the gate (the first model: on its holdout)

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return self.model.predict(transform(rows, self.state))

    def profile(self, rows: pd.DataFrame, params: Params, max_rows: int | None) -> pd.DataFrame:
        return reference_profile(
            rows, self.predict(rows), params.dataset, max_rows=max_rows or len(rows), seed=params.drift.seed
        )


def retrain(
    request: dict, by_day: dict[str, pd.DataFrame], raw: pd.DataFrame, champion: Version, number: int, params: Params
) -> tuple[Version | None, dict]:
    """What the retrain job decides for a request: the windows, the winner, the gate; the new version if it passed."""
    spec, configured = params.dataset, params.retraining.windows
    config = training_set_config(request)
    start, changed = config["reference_from"], bool(config["relation_changed"])  # the episode's start; a collapse
    dates = row_dates(raw, spec)  # as training_set: the raw rows' dates when the spec has a timestamp
    raw_dates = set() if dates is None else set(dates.dropna())
    days = [d for d in sorted(by_day) if config["recent_from"] <= d <= config["recent_to"] and d not in raw_dates]
    labelled = [d for d in sorted(by_day) if d <= config["recent_to"] and d not in raw_dates]
    dated = raw_days(raw_dates, labelled, days)
    evaluation = evaluation_days({d: len(by_day[d]) for d in days}, params.gate.min_rows, start)
    before = [d for d in days if d not in evaluation]
    windows = candidate_windows(configured, before, start, dated, changed)
    gap = choice_gap(days[-1], config["requested_on"], changed)
    lagged = lagged_windows(configured, windows, before, gap, start, dated)
    holdout = pd.concat([by_day[d] for d in evaluation], ignore_index=True)
    labels = encode_target(holdout, spec).to_numpy()
    models, scores, lagged_scores = {}, {}, {}
    for window, into in [(w, scores) for w in windows] + [(w, lagged_scores) for w in lagged]:
        # A raw day's rows are in by_day (the raw rows of that date), as training_set gives them.
        train = pd.concat(([raw] if window.raw else []) + [by_day[d] for d in window.days], ignore_index=True)
        model = Version(number, train, holdout, params, window_weights(window, raw, by_day))
        into[window.name] = model.predict(holdout)
        if into is scores:
            models[window.name] = model
    gate = params.gate
    chosen, why, aucs = choose_window(
        labels, scores, lagged_scores, gap, confidence=gate.confidence, resamples=gate.resamples, seed=gate.seed
    )
    union = pd.concat(
        ([raw] if any(w.raw for w in windows) else []) + [by_day[d] for w in windows for d in w.days],
        ignore_index=True,
    ).drop_duplicates(spec.id.column)
    _, baseline = best_single_column(union, holdout, spec)
    candidate = models[chosen]
    decision = versus_champion(
        labels,
        scores[chosen],
        champion.predict(holdout),
        gate,
        candidate_auc=aucs[chosen],
        min_auc=baseline + gate.baseline_margin if gate.min_auc == "auto" else float(gate.min_auc),
        champion_version=champion.number,
    )
    entry = {
        "run_key": request["run_key"],
        "window": chosen,
        "window_reason": why,
        "gate_passed": decision.passed,
        "gate_reason": decision.reason,
        "promoted": decision.passed,
        "version": number if decision.passed else None,
    }
    candidate.reached = aucs[chosen]  # what it reached at its gate, as the registry records it
    return (candidate if decision.passed else None), entry


def replay_inprocess(
    rows: pd.DataFrame, raw_days: list[str], days: list[str], label_delay: int, params: Params
) -> tuple[dict, list[dict]]:
    """The project's nights under its rules, in-process: the setup and one record per night."""
    spec, settings = params.dataset, params.retraining
    by_day = {d: frame.drop(columns=DAY).reset_index(drop=True) for d, frame in rows.groupby(DAY)}
    raw = pd.concat([by_day[d] for d in raw_days], ignore_index=True)
    split = split_rows(raw, spec, fraction=params.training.holdout_fraction, seed=params.training.seed)
    holdout = side(split, HOLDOUT)
    champion = Version(1, side(split, TRAIN), holdout, params)
    champion.reached = float(roc_auc_score(encode_target(holdout, spec).to_numpy(), champion.predict(holdout)))
    versions = {1: champion}
    setup = {"version": 1, "holdout_auc": champion.reached, "gate_reason": "in-process: no gate for the first model"}
    state, last_request, requested_by, storage_id = State(), None, None, 0
    scored_by: dict[str, int] = {}
    labelled: list[str] = []
    nights = []
    for number, day in enumerate(days, start=1):
        started = time.monotonic()
        today = by_day[day]
        scores = champion.predict(today)
        truth = encode_target(today, spec).to_numpy()
        scored_by[day] = champion.number
        current = champion.profile(today, params, params.drift.current_rows).drop(columns=["day"], errors="ignore")
        result = drift_verdict(
            champion.reference, current, spec, params.drift.drift_share, champion.importance, params.drift.seed
        )
        storage_id += 1
        events = [
            Event(
                storage_id,
                "drift",
                day,
                result.verdict == "drift",
                champion.number,
                f"drift_report {day}: drifted columns carry {result.drift_share:.2f} of the importance "
                f"({', '.join(result.drifted_columns) or 'none'}), prediction drift {result.prediction['drifted']}",
                estimated_drop=bool(result.performance["dropped"]),
            )
        ]
        night = {
            "night": number,
            "day": day,
            "version": champion.number,
            "verdict": result.verdict,
            "drift_share": result.drift_share,
            "auc": float(roc_auc_score(truth, scores)),
            "retrains": [],
            "failures": [],
        }
        if number > label_delay:
            arrived = days[number - 1 - label_delay]
            labelled.append(arrived)
            frame = by_day[arrived]
            version = versions[scored_by[arrived]]
            y = encode_target(frame, spec).to_numpy()
            auc = float(roc_auc_score(y, version.predict(frame)))
            storage_id += 1
            events.append(
                Event(
                    storage_id,
                    "performance",
                    arrived,
                    False,
                    version.number,
                    f"model_performance {arrived}",
                    auc,
                    auc_standard_error(auc, int(y.sum()), int(len(y) - y.sum())),
                    reached_auc=version.reached,
                )
            )
        state, _ = observe(state, events, champion.number, settings, champion.reached)
        decision = decide(state, labelled, settings, last_request, requested_by)
        state = decision.state
        night["skip_reason"] = "; ".join(decision.notes)
        if decision.retrain is not None:
            last_request, requested_by = decision.retrain["requested_on"], champion.number
            new, entry = retrain(decision.retrain, by_day, raw, champion, len(versions) + 1, params)
            night["retrains"].append(entry)
            if new is not None:
                versions[new.number] = new
                champion = new
        night["seconds"] = round(time.monotonic() - started, 2)
        nights.append(night)
    return setup, nights
