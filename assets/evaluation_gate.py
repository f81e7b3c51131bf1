"""evaluation_gate: the blocking check between a candidate model and the registry.

The candidate and the current champion are both loaded from their verified artifacts and scored on
the candidate's holdout rows through the same feature code, so the comparison is like for like.
The candidate passes when its AUC reaches `gate.min_auc` AND it trails the champion by no more than
`gate.max_auc_drop` (params.yaml). A failed gate stops the run before `registered_model`.
"""

import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from assets.candidate_model import candidate_model, model_name
from assets.training_set import HOLDOUT_ROWS
from ml.artifact import ArtifactIntegrityError
from ml.evaluation import binary_metrics
from ml.features import encode_target
from ml.gate import GateDecision, decide
from ml.predictor import Predictor
from resources.dvc import DvcResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

CHECK_NAME = "evaluation_gate"
CHAMPION = "champion"


def gate_settings(dvc: DvcResource) -> tuple[float, float]:
    section = dvc.params().get("gate") or {}
    try:
        return float(section["min_auc"]), float(section["max_auc_drop"])
    except (KeyError, TypeError, ValueError) as error:
        raise dg.Failure(
            description=f"params.yaml: gate.min_auc and gate.max_auc_drop must be numbers ({error})"
        ) from None


def _auc(predictor: Predictor, rows, labels: np.ndarray, threshold: float) -> float:
    return binary_metrics(labels, predictor.predict(rows), threshold)["roc_auc"]


def evaluate_candidate(
    candidate: dict[str, Any], dvc: DvcResource, storage: ArtifactStore, registry: ModelRegistry
) -> GateDecision:
    """Score the candidate and the champion on the candidate's holdout and apply the gate's rule."""
    min_auc, max_drop = gate_settings(dvc)
    rows = storage.read_parquet(*HOLDOUT_ROWS)
    labels = encode_target(rows, dvc.dataset_spec()).to_numpy()
    threshold = 0.5  # AUC does not depend on it
    local = storage.local_copy(candidate["artifact"])
    predictor = Predictor.load(local, expected_manifest_sha256=candidate["manifest_sha256"])
    candidate_auc = _auc(predictor, rows, labels, threshold)
    reported = candidate["roc_auc"]
    if abs(candidate_auc - reported) > 1e-9:
        raise ArtifactIntegrityError(
            f"{local}: rescored holdout AUC {candidate_auc:.6f} differs from the {reported:.6f} training reported; "
            "the holdout rows and the artifact do not belong together (was training_set rebuilt?)"
        )
    name = model_name(dvc)
    champion_version = registry.alias_version(name, CHAMPION)
    champion_auc = None
    if champion_version is not None:
        with tempfile.TemporaryDirectory(prefix="keel-champion-") as tmp:
            champion = Predictor.load(registry.download(name, champion_version, Path(tmp) / "champion"))
            champion_auc = _auc(champion, rows, labels, threshold)
    return decide(
        candidate_auc,
        min_auc=min_auc,
        max_auc_drop=max_drop,
        champion_version=champion_version,
        champion_auc=champion_auc,
    )


@dg.asset_check(
    asset=candidate_model,
    name=CHECK_NAME,
    blocking=True,
    description=(
        "Blocking: the candidate's holdout ROC AUC must reach gate.min_auc AND be no more than "
        "gate.max_auc_drop below the current champion's AUC on the same holdout rows."
    ),
)
def evaluation_gate(
    context: dg.AssetCheckExecutionContext, dvc: DvcResource, storage: ArtifactStore, registry: ModelRegistry
) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(candidate_model.key)
    candidate = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    try:
        decision = evaluate_candidate(candidate, dvc, storage, registry)
    except ArtifactIntegrityError as error:
        registry.set_run_tags(candidate["mlflow_run_id"], {"keel.gate": "error"})
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata={"reason": f"blocked: {error}"}
        )
    registry.set_run_tags(
        candidate["mlflow_run_id"],
        {"keel.gate": "passed" if decision.passed else "failed", "keel.gate_reason": decision.reason},
    )
    metadata: dict[str, Any] = {
        "reason": decision.reason,
        "candidate_auc": decision.candidate_auc,
        "min_auc": decision.min_auc,
        "max_auc_drop": decision.max_auc_drop,
        "candidate_manifest_sha256": candidate["manifest_sha256"],
        "mlflow_run_id": candidate["mlflow_run_id"],
    }
    if decision.champion_version is not None:
        metadata |= {"champion_version": decision.champion_version, "champion_auc": decision.champion_auc}
    return dg.AssetCheckResult(passed=decision.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
