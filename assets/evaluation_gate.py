"""evaluation_gate: the blocking check between a candidate model and the registry.

The candidate and the current champion are both loaded from their verified artifacts and scored
through the same feature code on the same rows: the training set's holdout (with labelled days, the
newest whole days, which no candidate trained on). The candidate passes when its holdout AUC reaches
`gate.min_auc` (auto: the best single column plus a margin, ml/baseline.py) AND it is not worse than
the champion beyond the noise: a paired bootstrap of the AUC difference on those rows (ml/gate.py)
blocks it only when even its upper bound is below `-gate.max_auc_drop`. A failed gate stops the run
before `registered_model`; `passed_gate` is how a registration finds the verdict on its candidate.
"""

import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

import ml.io
from assets.candidate_model import candidate_model
from assets.records import Candidate
from data_checks.asset_checks import latest_evaluation
from ml.artifact import ArtifactIntegrityError
from ml.evaluation import binary_metrics
from ml.features import encode_target
from ml.gate import GateDecision, decide, versus_champion
from ml.params import GateSection
from ml.predictor import Predictor
from ml.spec import DatasetSpec
from resources.params import ParamsResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

CHECK_NAME = "evaluation_gate"
GRADED_RUN = "candidate_run_id"  # which candidate (by the run that trained it) an evaluation graded


def evaluate_candidate(
    candidate: Candidate, gate: GateSection, spec: DatasetSpec, storage: ArtifactStore, registry: ModelRegistry
) -> GateDecision:
    """Score the candidate and the champion on the candidate's holdout and apply the gate's rule."""
    rows = ml.io.read_parquet(candidate.training_set.holdout_uri(storage))
    labels = encode_target(rows, spec).to_numpy()
    where = candidate.artifact_uri(storage)
    with storage.local_copy(where) as local:
        candidate_scores = Predictor.load(local, expected_manifest_sha256=candidate.manifest_sha256).predict(rows)
    candidate_auc = binary_metrics(labels, candidate_scores, 0.5)["roc_auc"]  # AUC does not depend on the threshold
    reported = candidate.metrics["roc_auc"]
    if abs(candidate_auc - reported) > 1e-9:
        raise ArtifactIntegrityError(
            f"{where}: rescored holdout AUC {candidate_auc:.6f} differs from the {reported:.6f} training reported; "
            "the holdout rows and the artifact do not belong together"
        )
    training_set = candidate.training_set
    baseline = f"best single column {training_set.baseline_column} {training_set.baseline_auc:.4f}"
    if gate.min_auc == "auto":
        min_auc, bar = training_set.baseline_auc + gate.baseline_margin, f"{baseline} + {gate.baseline_margin:g}"
    else:
        # A fixed bar still says what one column alone reaches: a model below it adds nothing.
        min_auc, bar = float(gate.min_auc), f"gate.min_auc; {baseline}"
    champion_version = registry.champion()
    if champion_version is None:
        return decide(candidate_auc, min_auc=min_auc, max_auc_drop=gate.max_auc_drop, bar=bar)
    days = training_set.evaluation_days
    if days:
        compared_on = f"newest labelled days {days[0]}..{days[-1]}, {len(rows)} rows no candidate trained on"
    else:
        compared_on = f"holdout, {len(rows)} rows"
    with tempfile.TemporaryDirectory(prefix="keel-champion-") as tmp:
        champion = Predictor.load(registry.download(registry.model_name, champion_version, Path(tmp) / "champion"))
        champion_scores = champion.predict(rows)
    return versus_champion(
        labels,
        candidate_scores,
        champion_scores,
        gate,
        candidate_auc=candidate_auc,
        min_auc=min_auc,
        champion_version=champion_version,
        bar=bar,
        compared_on=compared_on,
    )


@dg.asset_check(
    asset=candidate_model,
    name=CHECK_NAME,
    blocking=True,
    description=(
        "Blocking: the candidate's holdout ROC AUC must reach gate.min_auc (auto: the best single "
        "column's AUC plus gate.baseline_margin) AND not be worse than the current champion's on the "
        "same rows (the newest whole labelled days) beyond the noise: blocked only when the paired "
        "bootstrap's one-sided gate.confidence upper bound of the difference is below -gate.max_auc_drop."
    ),
)
def evaluation_gate(
    candidate_model: Candidate, params: ParamsResource, storage: ArtifactStore, registry: ModelRegistry
) -> dg.AssetCheckResult:
    settings = params.load()
    try:
        decision = evaluate_candidate(candidate_model, settings.gate, settings.dataset, storage, registry)
    except ArtifactIntegrityError as error:
        registry.set_run_tags(candidate_model.mlflow_run_id, {"keel.gate": "error"})
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"reason": f"blocked: {error}", GRADED_RUN: candidate_model.run_id},
            description=f"blocked: {error}",
        )
    registry.set_run_tags(
        candidate_model.mlflow_run_id,
        {"keel.gate": "passed" if decision.passed else "failed", "keel.gate_reason": decision.reason},
    )
    metadata: dict[str, Any] = {
        "reason": decision.reason,
        "candidate_auc": decision.candidate_auc,
        "min_auc": decision.min_auc,
        "max_auc_drop": decision.max_auc_drop,
        "candidate_manifest_sha256": candidate_model.manifest_sha256,
        GRADED_RUN: candidate_model.run_id,
        "mlflow_run_id": candidate_model.mlflow_run_id,
    }
    if decision.bar:
        metadata["min_auc_from"] = decision.bar
    if decision.champion_version is not None:
        metadata |= {
            "champion_version": decision.champion_version,
            "champion_auc": decision.champion_auc,
            "compared_on": decision.compared_on,
            "candidate_compared_auc": decision.candidate_compared_auc,
        }
    if decision.difference is not None:
        metadata |= {
            "auc_difference": decision.difference.difference,
            "auc_difference_lower": decision.difference.lower,
            "auc_difference_upper": decision.difference.upper,
            "compared_rows": decision.difference.rows,
        }
    return dg.AssetCheckResult(  # the description is printed with the verdict, on the command line too
        passed=decision.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata, description=decision.reason
    )


def passed_gate(instance: dg.DagsterInstance, candidate: Candidate) -> GateDecision:
    """The gate's verdict on this candidate, if it passed: the newest evaluation that graded it.

    Found by the candidate the gate says it graded (the run that trained it), never as "the latest
    gate": a registration must not obey the gate of a candidate another run trained meanwhile.
    """
    key = dg.AssetCheckKey(candidate_model.key, CHECK_NAME)

    def graded_this_candidate(record) -> bool:
        graded = record.evaluation.metadata.get(GRADED_RUN)
        return graded is not None and graded.value == candidate.run_id

    evaluation = latest_evaluation(instance, key, graded_this_candidate)
    if evaluation is None or not evaluation.passed:
        problem = "not run on it" if evaluation is None else f"failed: {evaluation.metadata['reason'].value}"
        raise dg.Failure(
            description=f"candidate_model did not pass its evaluation gate ({CHECK_NAME}: {problem}); "
            "fix the cause and re-materialize it with its checks",
            metadata={"candidate_run_id": candidate.run_id},
        )
    values = {name: value.value for name, value in evaluation.metadata.items()}
    return GateDecision(
        passed=True,
        reason=str(values["reason"]),
        candidate_auc=float(values["candidate_auc"]),
        min_auc=float(values["min_auc"]),
        max_auc_drop=float(values["max_auc_drop"]),
        champion_version=values.get("champion_version"),
        champion_auc=values.get("champion_auc"),
    )
