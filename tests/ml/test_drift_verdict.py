"""The verdict weighs drift by what it costs a real model; the calibration allows for reference days of
uneven size; the AUC estimated from scores alone tracks the realized one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ml.drift import DAY, VerdictSettings, drift_verdict, profile_predict, reference_profile
from ml.drift_calibration import calibrate_column
from ml.features import encode_target, fit_features, transform
from ml.models import fit_model
from ml.params import load_params
from ml.performance_estimate import compare, estimated_auc
from ml.predictor import Predictor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(spec, telco_raw):
    """A LightGBM model (the project's settings, fewer trees) on half the Telco rows; its holdout as the
    reference profile, as registration stores it; the rest as the pool days are drawn from."""
    params = load_params(REPO / "params.yaml")
    rows = telco_raw.sample(frac=1.0, random_state=1).reset_index(drop=True)
    train, holdout, pool = rows[:3500], rows[3500:5000], rows[5000:]
    config = params.training.resolve()
    state = fit_features(train, spec, params.features)
    hyper = {**config.hyperparameters, "n_estimators": 120, "learning_rate": 0.07}
    fitted = fit_model(config.model, transform(train, state), encode_target(train, spec).to_numpy(), hyper, 0)
    predictor = Predictor(Path("."), {}, state, fitted)
    reference = reference_profile(holdout, predictor.predict(holdout), spec, 20_000, 0)
    return predictor, reference, pool


def verdict(spec, model, day: pd.DataFrame):
    predictor, reference, _ = model
    current = reference_profile(day, predictor.predict(day), spec, len(day), 0)
    return drift_verdict(
        reference,
        current,
        spec,
        drift_share=0.3,
        importance=predictor.column_importance(),
        predict=profile_predict(predictor.predict, spec),
        settings=VerdictSettings(),
    )


def days(model, count: int, size: int, seed: int):
    _, _, pool = model
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield pool.iloc[rng.choice(len(pool), size, replace=True)].reset_index(drop=True)


def test_a_harmful_level_swap_in_the_top_column_drifts_the_data_set_and_names_the_rule(spec, model):
    predictor = model[0]
    importance = predictor.column_importance()
    assert max(importance, key=importance.get) == "contract"
    swap = {"Month-to-month": "Two year", "Two year": "Month-to-month"}
    for day in days(model, 3, 1000, seed=2):
        moved = day.assign(contract=day["contract"].map(lambda v: swap.get(v, v)))
        labels = encode_target(day, spec).to_numpy()
        cost = roc_auc_score(labels, predictor.predict(day)) - roc_auc_score(labels, predictor.predict(moved))
        result = verdict(spec, model, moved)
        assert cost >= 0.05 and result.verdict == "drift" and result.dataset_drift
        assert "impact" in result.rules and result.impact >= result.impact_threshold
        contract = next(c for c in result.columns if c["column"] == "contract")
        assert contract["drifted"] and contract["impact"] >= 0.05
        assert result.because.startswith("drift (rules fired: impact")
        assert "contract" in result.because.split("impact:")[1]


def test_an_unimportant_column_never_drifts_the_data_set_by_itself(spec, model):
    predictor = model[0]
    importance = predictor.column_importance()
    weak = [c for c in spec.columns.boolean if importance[c] < 0.01]
    assert weak, importance
    column = weak[0]
    for day in days(model, 4, 1000, seed=3):
        moved = day.assign(**{column: 1})  # every row the same value: far outside normal
        result = verdict(spec, model, moved)
        by_column = {c["column"]: c for c in result.columns}
        assert by_column[column]["drifted"] and by_column[column]["impact"] < result.impact_threshold / 2
        assert result.verdict == "no drift" and result.rules == [], result.because


def test_days_without_drift_do_not_drift_with_the_model(spec, model):
    said = [verdict(spec, model, day).verdict for day in days(model, 10, 500, seed=4)]
    assert said.count("drift") == 0


def test_a_price_rise_moves_the_scores_enough_to_drift(spec, model):
    """The demo's story: monthly_charges up 25 % drifts the data set by its impact on the scores."""
    for day in days(model, 3, 1000, seed=5):
        result = verdict(spec, model, day.assign(monthly_charges=day["monthly_charges"] * 1.25))
        assert "impact" in result.rules and "monthly_charges" in result.drifted_columns, result.because
        assert max(result.columns, key=lambda c: c["impact"] or 0.0)["column"] == "monthly_charges"


def test_reference_days_of_uneven_size_still_flag_a_20_percent_shift():
    """A reference of 40 whole days of 2 to 300 rows (most of them small), all alike: a small day's score
    is its sampling noise, which must not lift the threshold of a 1,000-row day (scored without allowing
    for the days' sizes, the threshold rose four- to sevenfold and a 20 % income rise went unflagged)."""
    from ml.drift_calibration import score

    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        sizes = np.geomspace(2, 300, 40).astype(int)
        income = pd.Series(rng.lognormal(10, 1.0, sizes.sum()))
        days_of = np.repeat([f"2026-01-{d:02d}" for d in range(1, 41)], sizes)
        calibration = calibrate_column(income, "numeric", 1000, days=days_of)
        flat = calibrate_column(income, "numeric", 1000)
        assert calibration.day_level is not None and "less the noise of its size" in calibration.basis
        assert calibration.threshold < 1.5 * flat.threshold
        risen = pd.Series(rng.lognormal(10, 1.0, 1000) * 1.2)
        same = pd.Series(rng.lognormal(10, 1.0, 1000))
        assert score(income, risen, "numeric") > calibration.threshold
        assert score(income, same, "numeric") <= calibration.threshold


def test_reference_days_that_differ_by_nature_still_widen_the_threshold():
    rng = np.random.default_rng(1)
    sizes = np.linspace(2, 300, 40).astype(int)
    level = np.repeat(rng.normal(0, 0.3, 40), sizes)  # each day its own level: the weather
    values = pd.Series(rng.normal(0, 1, sizes.sum()) + level)
    days_of = np.repeat([f"d{d:02d}" for d in range(40)], sizes)
    assert calibrate_column(values, "numeric", 1000, days=days_of).threshold > 1.5 * (
        calibrate_column(values, "numeric", 1000).threshold
    )


def test_the_estimated_auc_tracks_the_realized_auc_of_calibrated_scores():
    rng = np.random.default_rng(0)
    for a, b in ((2, 5), (0.5, 0.5), (5, 5)):
        scores = rng.beta(a, b, 20_000)
        labels = rng.random(len(scores)) < scores
        assert estimated_auc(scores) == pytest.approx(roc_auc_score(labels, scores), abs=0.01)
    assert estimated_auc(np.full(100, 0.3)) == pytest.approx(0.5)
    assert np.isnan(estimated_auc(np.array([0.2])))


def test_the_estimated_auc_drops_when_the_scores_lose_their_spread_and_not_by_chance():
    rng = np.random.default_rng(1)
    reference = rng.beta(0.6, 1.2, 5000)
    same = compare(reference, rng.beta(0.6, 1.2, 1000), min_drop=0.03, z=3)
    squeezed_scores = 0.3 + 0.3 * (rng.beta(0.6, 1.2, 1000) - 0.33)  # a quarter of the spread left
    squeezed = compare(reference, squeezed_scores, min_drop=0.03, z=3)
    labels = rng.random(1000) < squeezed_scores
    assert not same.dropped and abs(same.drop) < 0.03
    assert squeezed.dropped and squeezed.drop > 0.1
    assert squeezed.estimated_auc == pytest.approx(roc_auc_score(labels, squeezed_scores), abs=0.05)
    assert "estimated ROC AUC" in squeezed.detail


def test_the_reference_day_column_reaches_the_calibration(spec, model):
    """A reference with whole days (a timestamp) is calibrated per day at the current size."""
    _, reference, _ = model
    with_days = reference.assign(**{DAY: np.repeat([f"2026-02-{d:02d}" for d in range(1, 16)], 100)})
    predictor = model[0]
    day = next(days(model, 1, 800, seed=6))
    current = reference_profile(day, predictor.predict(day), spec, len(day), 0)
    result = drift_verdict(with_days, current, spec, drift_share=0.3, predict=profile_predict(predictor.predict, spec))
    assert all("reference days" in c["calibration"] for c in result.columns if c["kind"] == "numeric")
    assert result.verdict == "no drift", result.because
