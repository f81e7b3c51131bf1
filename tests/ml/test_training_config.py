"""The `training:` section and run-config overrides."""

from __future__ import annotations

import pytest

from ml.training_config import TrainingConfig, TrainingConfigError

SECTION = {
    "model": "lightgbm",
    "seed": 42,
    "holdout_fraction": 0.2,
    "threshold": 0.5,
    "hyperparameters": {"lightgbm": {"num_leaves": 8, "n_estimators": 300}, "logistic_regression": {"C": 1.0}},
}


def test_the_chosen_family_takes_its_own_hyperparameters():
    assert TrainingConfig.from_params(SECTION).hyperparameters == {"num_leaves": 8, "n_estimators": 300}
    lr = TrainingConfig.from_params(SECTION, {"model": "logistic_regression"})
    assert lr.model == "logistic_regression" and lr.hyperparameters == {"C": 1.0}


def test_overrides_merge_over_params_and_empty_overrides_change_nothing():
    config = TrainingConfig.from_params(SECTION, {"seed": 7, "hyperparameters": {"num_leaves": 4}})
    assert config.seed == 7 and config.hyperparameters == {"num_leaves": 4, "n_estimators": 300}
    assert TrainingConfig.from_params(SECTION, {"model": None, "seed": None, "hyperparameters": {}}) == (
        TrainingConfig.from_params(SECTION)
    )


def test_round_trip_through_a_dict():
    config = TrainingConfig.from_params(SECTION)
    assert TrainingConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({**SECTION, "model": "xgboost"}, "training.model 'xgboost' is not one of"),
        ({**SECTION, "holdout": 0.2}, "training: unknown keys ['holdout']"),
        ({**SECTION, "holdout_fraction": 1.0}, "training.holdout_fraction must be in (0, 1)"),
        ({**SECTION, "hyperparameters": {"xgb": {}}}, "unknown model families ['xgb']"),
    ],
)
def test_bad_sections_are_refused_by_key(section, message):
    with pytest.raises(TrainingConfigError) as error:
        TrainingConfig.from_params(section)
    assert message in str(error.value)
