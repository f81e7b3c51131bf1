"""Calendar retraining policies replayed without Dagster, with the project's own feature code and model.

Each policy trains with ml.features (fit_features / transform) and ml.models.fit_model on the
params' training family, hyperparameters and seed, on every row of its window (no holdout: no gate
judges these models). On the night of day d a policy knows the labels of the raw days and of the
days up to d - label_delay, as the project does; it scores day d with its current model.
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
    policy: Policy, rows: pd.DataFrame, raw_days: list[str], days: list[str], label_delay: int, params: Params
) -> dict:
    """Score `days` in order under the policy: the daily AUCs, how many retrains, and the wall seconds."""
    spec, config = params.dataset, params.training.resolve()
    by_day = dict(tuple(rows.groupby("day")))
    started = time.monotonic()
    model = state = trained_on = None
    retrains, aucs = 0, []
    for number, day in enumerate(days, start=1):
        labelled = days[: max(0, number - label_delay)]
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
            trained_on = window
        today = by_day[day]
        scores = model.predict(transform(today, state))
        aucs.append(float(roc_auc_score(encode_target(today, spec).to_numpy(), scores)))
    return {
        "policy": policy.name,
        "aucs": aucs,
        "mean_auc": float(np.mean(aucs)),
        "retrains": retrains,
        "seconds": time.monotonic() - started,
    }
