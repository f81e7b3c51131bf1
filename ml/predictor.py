"""A trained model as it is used: a verified artifact directory applied to raw rows.

`Predictor.load` checks every file against the manifest before parsing anything, then scores rows
with the artifact's own feature state through the same feature code as training (ml/features.py).
With `compiled=True` a LightGBM model predicts with its compiled form (ml/compiled.py), built from
the verified model.txt; `engine` says what predicts (and why not compiled, when it could not be).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.artifact import MANIFEST, verify_artifact
from ml.features import FeatureState, Rows, feature_matrix, source_columns
from ml.io import file_digest
from ml.models import MODEL_FILES, LightGBMModel, Model, ModelError, load_model

STATE_FILE = "feature_state.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class Predictor:
    directory: Path
    manifest: dict[str, Any]
    state: FeatureState
    model: Model
    engine: str = ""

    @classmethod
    def load(
        cls, directory: str | Path, expected_manifest_sha256: str | None = None, *, compiled: bool = False
    ) -> Predictor:
        directory = Path(directory)
        manifest = verify_artifact(directory, expected_manifest_sha256)
        state = FeatureState.from_json((directory / STATE_FILE).read_text(encoding="utf-8"))
        model = load_model(manifest["model_family"], directory)
        engine = model.family
        if isinstance(model, LightGBMModel):
            import lightgbm

            engine = f"lightgbm {lightgbm.__version__}"
            if compiled:
                from ml.compiled import compile_lightgbm

                manifest_sha256 = file_digest(str(directory / MANIFEST))  # the verified manifest: the cache key
                model_file = directory / MODEL_FILES[model.family]
                model, engine = compile_lightgbm(model, model_file, manifest_sha256)
        return cls(directory, manifest, state, model, engine)

    def matrix(self, rows: Rows, out: np.ndarray | None = None) -> np.ndarray:
        """The model's input for raw rows (a pandas frame or an Arrow batch): the features in its column order
        (`out`: a buffer to fill, as `feature_matrix`'s)."""
        matrix = feature_matrix(rows, self.state, out)
        if self.model.columns == self.state.columns:
            return matrix
        missing = [c for c in self.model.columns if c not in self.state.columns]
        if missing:
            raise ModelError(f"the model reads columns {missing[:10]} that its feature state does not make")
        return matrix[:, [self.state.columns.index(c) for c in self.model.columns]]

    def predict(self, rows: Rows) -> np.ndarray:
        """Positive-class probabilities for raw rows (the columns the spec names)."""
        return self.model.predict(self.matrix(rows))

    def column_importance(self) -> dict[str, float]:
        """The model's importance summed per spec column (its output columns folded back), as shares."""
        return column_importance(self.state, self.model)


def column_importance(state, model) -> dict[str, float]:
    """A model's importance summed per spec column of its feature state (output columns folded back), as shares."""
    sources = source_columns(state)
    totals = dict.fromkeys(state.input_columns, 0.0)
    for name, value in model.importance().items():
        column = sources.get(name, name)
        totals[column] = totals.get(column, 0.0) + abs(float(value))
    total = sum(totals.values())
    return {c: (v / total if total > 0 else 0.0) for c, v in totals.items()}
