"""The `training:` section of params.yaml: model family, hyperparameters, seed, holdout and threshold.

Dagster run config may override the family, the seed and single hyperparameters; the merged result
is what the training entry point receives (as JSON) and what the registry records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FAMILIES = ("lightgbm", "logistic_regression")
_KEYS = {"model", "seed", "holdout_fraction", "threshold", "hyperparameters"}


class TrainingConfigError(ValueError):
    """The training configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class TrainingConfig:
    model: str = "lightgbm"
    seed: int = 42
    holdout_fraction: float = 0.2
    threshold: float = 0.5
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # for `model` only

    def __post_init__(self) -> None:
        if self.model not in FAMILIES:
            raise TrainingConfigError(f"training.model {self.model!r} is not one of {', '.join(FAMILIES)}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise TrainingConfigError(f"training.holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not 0.0 < self.threshold < 1.0:
            raise TrainingConfigError(f"training.threshold must be in (0, 1), got {self.threshold}")

    @classmethod
    def from_params(cls, section: dict[str, Any] | None, overrides: dict[str, Any] | None = None) -> TrainingConfig:
        """The section's values, the chosen family's hyperparameters, then `overrides` on top."""
        section, overrides = dict(section or {}), {k: v for k, v in (overrides or {}).items() if v not in (None, {})}
        unknown = (set(section) | set(overrides)) - _KEYS
        if unknown:
            raise TrainingConfigError(f"training: unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
        model = overrides.get("model", section.get("model", cls.model))
        per_family = section.get("hyperparameters") or {}
        unknown_families = set(per_family) - set(FAMILIES)
        if unknown_families:
            raise TrainingConfigError(
                f"training.hyperparameters: unknown model families {sorted(unknown_families)} (known: {', '.join(FAMILIES)})"
            )
        hyperparameters = {**(per_family.get(model) or {}), **overrides.get("hyperparameters", {})}
        return cls(
            model=model,
            seed=int(overrides.get("seed", section.get("seed", cls.seed))),
            holdout_fraction=float(section.get("holdout_fraction", cls.holdout_fraction)),
            threshold=float(section.get("threshold", cls.threshold)),
            hyperparameters=hyperparameters,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        unknown = set(data) - _KEYS
        if unknown:
            raise TrainingConfigError(f"training config: unknown keys {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
