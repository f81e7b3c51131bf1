"""A trained model as it is used: a verified artifact directory applied to raw rows.

`Predictor.load` checks every file against the manifest before parsing anything, then scores rows
with the artifact's own feature state through the same feature code as training (ml/features.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.artifact import verify_artifact
from ml.features import FeatureState, source_columns, transform
from ml.models import Model, load_model

STATE_FILE = "feature_state.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class Predictor:
    directory: Path
    manifest: dict[str, Any]
    state: FeatureState
    model: Model

    @classmethod
    def load(cls, directory: str | Path, expected_manifest_sha256: str | None = None) -> Predictor:
        directory = Path(directory)
        manifest = verify_artifact(directory, expected_manifest_sha256)
        state = FeatureState.from_json((directory / STATE_FILE).read_text(encoding="utf-8"))
        return cls(directory, manifest, state, load_model(manifest["model_family"], directory))

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Positive-class probabilities for raw rows (the columns the spec names)."""
        return self.model.predict(transform(rows, self.state))

    def column_importance(self) -> dict[str, float]:
        """The model's importance summed per spec column (its output columns folded back), as shares."""
        sources = source_columns(self.state)
        totals = dict.fromkeys(self.state.input_columns, 0.0)
        for name, value in self.model.importance().items():
            column = sources.get(name, name)
            totals[column] = totals.get(column, 0.0) + abs(float(value))
        total = sum(totals.values())
        return {c: (v / total if total > 0 else 0.0) for c, v in totals.items()}
