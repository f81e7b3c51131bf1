"""Model families, fitted and saved in non-executable formats.

- lightgbm: `lightgbm.LGBMClassifier`, saved as LightGBM's native text model (model.txt).
- logistic_regression: scikit-learn's StandardScaler + LogisticRegression, saved as JSON
  (means, scales, coefficients, intercept) and applied with numpy at load time.

Nothing is pickled, so loading a model never runs code from the artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd

MODEL_FILES = {"lightgbm": "model.txt", "logistic_regression": "model.json"}


class ModelError(ValueError):
    """A model cannot be fitted or loaded as configured; the message names the key or file."""


class Model(Protocol):
    family: str
    columns: list[str]

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray: ...
    def importance(self) -> dict[str, float]: ...
    def save(self, directory: Path) -> str: ...


def _matrix(features: pd.DataFrame | np.ndarray, columns: list[str]) -> np.ndarray:
    """The float64 matrix of `columns`; a matrix is taken as it is (its columns are `columns`, in order)."""
    if isinstance(features, np.ndarray):
        if features.ndim != 2 or features.shape[1] != len(columns):
            raise ModelError(f"a feature matrix must have {len(columns)} columns, got shape {features.shape}")
        return features
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ModelError(f"feature columns missing from the input: {missing[:10]}")
    return features[columns].to_numpy(dtype="float64")


def _check_keys(family: str, given: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ModelError(
            f"training.hyperparameters.{family}: unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}"
        )


class LightGBMModel:
    family = "lightgbm"

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        self.columns = list(booster.feature_name())

    @classmethod
    def fit(
        cls,
        features: pd.DataFrame,
        labels: np.ndarray,
        hyperparameters: dict[str, Any],
        seed: int,
        sample_weight: np.ndarray | None = None,
    ):
        _check_keys(cls.family, hyperparameters, set(lgb.LGBMClassifier().get_params()) - {"random_state"})
        # deterministic + row-wise histograms: the same data, seed and thread count give the same trees.
        params = {"verbose": -1, "n_jobs": 1, **hyperparameters}
        estimator = lgb.LGBMClassifier(**params, random_state=seed, deterministic=True, force_row_wise=True)
        estimator.fit(features, labels, sample_weight=sample_weight)
        return cls(estimator.booster_)

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self.booster.predict(_matrix(features, self.columns))

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(self.columns, gains, strict=True)}

    def save(self, directory: Path) -> str:
        self.booster.save_model(str(directory / MODEL_FILES[self.family]))
        return MODEL_FILES[self.family]

    @classmethod
    def load(cls, directory: Path) -> LightGBMModel:
        return cls(lgb.Booster(model_file=str(directory / MODEL_FILES[cls.family])))


class LogisticModel:
    family = "logistic_regression"

    def __init__(self, columns: list[str], mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float):
        self.columns, self.mean, self.scale, self.coef, self.intercept = columns, mean, scale, coef, intercept

    @classmethod
    def fit(
        cls,
        features: pd.DataFrame,
        labels: np.ndarray,
        hyperparameters: dict[str, Any],
        seed: int,
        sample_weight: np.ndarray | None = None,
    ):
        # Imported here: scoring only applies the stored coefficients and must run without scikit-learn.
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        _check_keys(cls.family, hyperparameters, set(LogisticRegression().get_params()) - {"random_state"})
        scaler = StandardScaler().fit(features.to_numpy(dtype="float64"))
        estimator = LogisticRegression(**hyperparameters, random_state=seed)
        estimator.fit(scaler.transform(features.to_numpy(dtype="float64")), labels, sample_weight=sample_weight)
        return cls(
            list(features.columns), scaler.mean_, scaler.scale_, estimator.coef_[0], float(estimator.intercept_[0])
        )

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        z = ((_matrix(features, self.columns) - self.mean) / self.scale) @ self.coef + self.intercept
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow for large |z|

    def importance(self) -> dict[str, float]:
        return {name: float(abs(c)) for name, c in zip(self.columns, self.coef, strict=True)}  # standardised inputs

    def save(self, directory: Path) -> str:
        document = {
            "columns": self.columns,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
        }
        (directory / MODEL_FILES[self.family]).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        return MODEL_FILES[self.family]

    @classmethod
    def load(cls, directory: Path) -> LogisticModel:
        path = directory / MODEL_FILES[cls.family]
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                d["columns"], np.array(d["mean"]), np.array(d["scale"]), np.array(d["coef"]), float(d["intercept"])
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ModelError(f"{path}: not a logistic regression model file ({error})") from None


_CLASSES = {"lightgbm": LightGBMModel, "logistic_regression": LogisticModel}


def fit_model(
    family: str,
    features: pd.DataFrame,
    labels: np.ndarray,
    hyperparameters: dict[str, Any],
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> Model:
    """The family's model fitted on the rows; `sample_weight` (one per row) weighs them, e.g. by recency."""
    if family not in _CLASSES:
        raise ModelError(f"unknown model family {family!r}; known: {', '.join(_CLASSES)}")
    try:
        return _CLASSES[family].fit(features, labels, hyperparameters, seed, sample_weight)
    except (TypeError, ValueError) as error:
        if isinstance(error, ModelError):
            raise
        raise ModelError(f"training.hyperparameters.{family}: {error}") from None


def load_model(family: str, directory: Path) -> Model:
    if family not in _CLASSES:
        raise ModelError(f"unknown model family {family!r}; known: {', '.join(_CLASSES)}")
    return _CLASSES[family].load(directory)
