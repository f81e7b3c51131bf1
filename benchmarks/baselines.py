"""Calendar retraining policies replayed without Dagster, with the project's own feature code and model.

Each policy trains with ml.features (fit_features / transform) and ml.models.fit_model on the
params' training family, hyperparameters and seed, on every row of its window (no holdout: no gate
judges these models). Day d's labels arrive on night d + label_delay, after that night's scoring
(as the project's sensor retrains after the night's run), so the model that scores day d knows the
labels of the raw days and of the days up to d - label_delay - 1, as the project's model does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ml.features import encode_target, fit_features, transform
from ml.models import fit_model
from ml.params import Params


@dataclass(frozen=True)
class Policy:
    name: str
    every: int | None  # retrain every this many nights; None: never (trained once)
    window: int | None  # the latest labelled days it trains on; None: the raw days only
    with_raw: bool = False  # the window's daily days are added to all the raw days


def policies(params: Params) -> list[Policy]:
    # The project's longest window (raw + its days when one of retraining.windows has the raw data),
    # on a calendar: what the project's retrains would learn without choosing.
    longest = max(params.retraining.windows, key=lambda w: (w.raw, w.days))
    return [
        Policy("static (first 30 days)", None, None),
        Policy("weekly, 28-day window", 7, 28),
        Policy(
            f"weekly, project window {longest.name} ({'raw + ' if longest.raw else ''}{longest.days} days)",
            7,
            longest.days,
            with_raw=longest.raw,
        ),
        Policy("daily, 28-day window", 1, 28),
    ]


def training_days(policy: Policy, raw_days: list[str], daily_labelled: list[str]) -> list[str]:
    """The days a policy trains on, given the raw days and the daily days whose labels have arrived."""
    if policy.window is None:
        return raw_days
    if policy.with_raw:
        return raw_days + daily_labelled[-policy.window :]
    return (raw_days + daily_labelled)[-policy.window :]


def replay_policy(
    policy: Policy,
    rows: pd.DataFrame,
    raw_days: list[str],
    days: list[str],
    label_delay: int,
    params: Params,
    ahead: bool = False,
) -> dict:
    """Score `days` in order under the policy: the daily AUCs, how many retrains, and the wall seconds.

    With `ahead`, every model also scores all the days after its first: `ahead[i]` holds the AUCs on
    days i, i+1, ... of the model that started serving on day i (benchmarks/hindsight.py)."""
    spec, config = params.dataset, params.training.resolve()
    by_day = dict(tuple(rows.groupby("day")))
    started = time.monotonic()
    model = state = trained_on = serving_since = None
    retrains, aucs, scored_ahead = 0, [], {}
    for number, day in enumerate(days, start=1):
        labelled = days[: max(0, number - 1 - label_delay)]
        scheduled = model is None or (policy.every is not None and (number - 1) % policy.every == 0)
        window = training_days(policy, raw_days, labelled)
        if scheduled and window != trained_on:
            if model is not None:
                retrains += 1
            train = pd.concat([by_day[d] for d in window], ignore_index=True)
            state = fit_features(train, spec, params.features)
            model = fit_model(
                config.model,
                transform(train, state),
                encode_target(train, spec).to_numpy(),
                config.hyperparameters,
                config.seed,
            )
            trained_on, serving_since = window, number - 1
            if ahead:
                scored_ahead[serving_since] = [day_auc(model, state, by_day[d], params) for d in days[serving_since:]]
        if ahead:
            aucs.append(scored_ahead[serving_since][number - 1 - serving_since])
        else:
            aucs.append(day_auc(model, state, by_day[day], params))
    result = {
        "policy": policy.name,
        "aucs": aucs,
        "mean_auc": float(np.mean(aucs)),
        "retrains": retrains,
        "seconds": time.monotonic() - started,
    }
    return result | {"ahead": scored_ahead} if ahead else result


def day_auc(model, state, day: pd.DataFrame, params: Params) -> float:
    """The model's ROC AUC on one day's rows."""
    scores = model.predict(transform(day, state))
    return float(roc_auc_score(encode_target(day, params.dataset).to_numpy(), scores))
