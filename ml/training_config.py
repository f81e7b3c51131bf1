"""Training settings: the `training:` section of params.yaml, and the resolved config one run trains with.

The section holds hyperparameters per model family; `TrainingSection.resolve` picks the family
(params.yaml's, or a run-config override), merges single hyperparameter overrides, and returns the
`TrainingConfig` that the training entry point receives as JSON and the registry records.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Family = Literal["lightgbm", "logistic_regression"]
FAMILIES: tuple[str, ...] = ("lightgbm", "logistic_regression")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingConfig(_Strict):
    """What one training run uses: one family and its hyperparameters."""

    model: Family = "lightgbm"
    seed: int = 42
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="For `model` only.")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TrainingSection(_Strict):
    """The `training:` section: the default family, the seed, the holdout, and hyperparameters per family."""

    model: Family = Field(default="lightgbm", description="The model family trained by default.")
    seed: int = Field(default=42, description="Model seed and holdout seed: same data + seed -> same metrics.")
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="By a seeded hash of the id; the latest rows with a timestamp."
    )
    threshold: float = Field(default=0.5, gt=0, lt=1, description="Accuracy, precision, recall and F1 at this score.")
    hyperparameters: dict[Family, dict[str, Any]] = Field(
        default_factory=dict, description="Per family; a family without an entry takes its library's defaults."
    )

    def resolve(
        self, model: str | None = None, seed: int | None = None, hyperparameters: dict[str, Any] | None = None
    ) -> TrainingConfig:
        """The config for one run: the section's values with the given overrides on top (None: none)."""
        family = model or self.model
        return TrainingConfig(
            model=family,
            seed=self.seed if seed is None else seed,
            holdout_fraction=self.holdout_fraction,
            threshold=self.threshold,
            hyperparameters={**self.hyperparameters.get(family, {}), **(hyperparameters or {})},
        )
