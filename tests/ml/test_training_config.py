"""The `training:` section and run-config overrides."""

from __future__ import annotations

import pydantic
import pytest

from ml.training_config import TrainingConfig, TrainingSection

SECTION = {
    "model": "lightgbm",
    "seed": 42,
    "holdout_fraction": 0.2,
    "threshold": 0.5,
    "hyperparameters": {"lightgbm": {"num_leaves": 8, "n_estimators": 300}, "logistic_regression": {"C": 1.0}},
}


def test_the_chosen_family_takes_its_own_hyperparameters():
    section = TrainingSection.model_validate(SECTION)
    assert section.resolve().hyperparameters == {"num_leaves": 8, "n_estimators": 300}
    lr = section.resolve(model="logistic_regression")
    assert lr.model == "logistic_regression" and lr.hyperparameters == {"C": 1.0}


def test_overrides_merge_over_params_and_empty_overrides_change_nothing():
    section = TrainingSection.model_validate(SECTION)
    config = section.resolve(seed=7, hyperparameters={"num_leaves": 4})
    assert config.seed == 7 and config.hyperparameters == {"num_leaves": 4, "n_estimators": 300}
    assert section.resolve(model=None, seed=None, hyperparameters={}) == section.resolve()


def test_round_trip_through_a_dict():
    config = TrainingSection.model_validate(SECTION).resolve()
    assert TrainingConfig.model_validate(config.to_dict()) == config


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({**SECTION, "model": "xgboost"}, "'xgboost' is not one of"),
        ({**SECTION, "holdout": 0.2}, "holdout\n  Extra inputs are not permitted"),
        ({**SECTION, "holdout_fraction": 1.0}, "must be in (0, 1)"),
        ({**SECTION, "hyperparameters": {"xgb": {}}}, "unknown model families ['xgb']"),
    ],
)
def test_bad_sections_are_refused_by_key(section, message):
    with pytest.raises(pydantic.ValidationError) as error:
        TrainingSection.model_validate(section)
    assert message in str(error.value)


def test_a_bad_override_is_refused_by_key():
    with pytest.raises(pydantic.ValidationError, match="'xgboost' is not one of lightgbm, logistic_regression"):
        TrainingSection.model_validate(SECTION).resolve(model="xgboost")
