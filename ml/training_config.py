"""Training settings: the `training:` section of params.yaml, and the resolved config one run trains with.

The section holds hyperparameters per model family; `TrainingSection.resolve` picks the family
(params.yaml's, or a run-config override), merges single hyperparameter overrides, and returns the
`TrainingConfig` that the training entry point receives as JSON and the registry records.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

FAMILIES: tuple[str, ...] = ("lightgbm", "logistic_regression")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("model", check_fields=False)
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"{value!r} is not one of {', '.join(FAMILIES)}")
        return value

    @field_validator("holdout_fraction", "threshold", check_fields=False)
    @classmethod
    def _between_0_and_1(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"must be in (0, 1), got {value}")
        return value


class TrainingConfig(_Strict):
    """What one training run uses: one family and its hyperparameters."""

    model: str = "lightgbm"
    seed: int = 42
    holdout_fraction: float = 0.2
    threshold: float = 0.5
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="For `model` only.")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TrainingSection(_Strict):
    """The `training:` section: the default family, the seed, the holdout, and hyperparameters per family."""

    model: str = Field(default="lightgbm", description="The model family trained by default.")
    seed: int = Field(default=42, description="Model seed and holdout seed: same data + seed -> same metrics.")
    holdout_fraction: float = Field(
        default=0.2,
        description="The latest rows by time when the spec has a timestamp, else by a seeded hash of the id.",
    )
    threshold: float = Field(default=0.5, description="Accuracy, precision, recall and F1 at this score.")
    hyperparameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per family; a family without an entry takes its library's defaults."
    )

    @field_validator("hyperparameters")
    @classmethod
    def _known_families(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(value) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown model families {unknown} (known: {', '.join(FAMILIES)})")
        return value

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
