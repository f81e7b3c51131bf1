"""registered_model: a candidate that passed the gate, as a new MLflow model version with its lineage.

`registry.promotion` in params.yaml decides its alias: `auto` moves `champion` to it; `manual`
moves `challenger`, and the `approve` job promotes it later. Alias moves are compare-and-set: the
champion is moved only if it is still the version the gate compared the candidate against.
"""

import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

import ml.io
from assets.candidate_model import candidate_lineage
from assets.evaluation_gate import passed_gate
from assets.records import Candidate
from ml.drift import reference_profile
from ml.params import Params
from ml.predictor import Predictor
from resources.params import ParamsResource
from resources.registry import CHALLENGER, CHAMPION, MANIFEST_TAG, AliasConflict, AliasMove, ModelRegistry
from resources.storage import ArtifactStore

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "f1")


def identical_champion(registry: ModelRegistry, manifest_sha256: str) -> int | None:
    """The champion's version when its artifact is byte-identical to the candidate's, else None.

    Same data, code and seed give the same bytes; a second version of them would only be noise.
    """
    champion = registry.champion()
    if champion is None:
        return None
    tags = registry.version_info(registry.model_name, champion)["tags"]
    return champion if tags.get(MANIFEST_TAG) == manifest_sha256 else None


def drift_reference(settings: Params, storage: ArtifactStore, candidate: Candidate) -> pd.DataFrame:
    """The training set's newest holdout rows scored by the candidate: stored with the version as the
    reference its drift reports compare each day against, so they never re-read the training set."""
    predictor = Predictor.load(storage.local_copy(candidate.artifact_uri(storage)), candidate.manifest_sha256)
    rows = ml.io.read_parquet(candidate.training_set.reference_uri(storage))
    return reference_profile(
        rows,
        predictor.predict(rows),
        settings.dataset,
        max_rows=settings.drift.reference_rows,
        seed=settings.drift.seed,
    )


def attach_reference(registry: ModelRegistry, name: str, version: int, profile: pd.DataFrame) -> str:
    with tempfile.TemporaryDirectory(prefix="keel-reference-") as tmp:
        path = Path(tmp) / "reference.parquet"
        profile.to_parquet(path, index=False)
        return registry.attach_reference(name, version, path)


def alias_move_metadata(move: AliasMove) -> dict:
    return {
        "alias_move": dg.MetadataValue.json(move.to_dict()),
        "alias": move.alias,
        "moved_from": f"v{move.from_version}" if move.from_version is not None else "none",
        "moved_to": f"v{move.to_version}",
        "reason": move.reason,
    }


@dg.asset(
    group_name="registry",
    kinds={"mlflow"},
    owners=["team:ml-platform"],
    description=(
        "The MLflow model version made from a candidate that passed evaluation_gate, tagged with "
        "its lineage (data version, code version, git commit, metrics, Dagster run id, artifact "
        "hashes). With registry.promotion=auto it becomes `champion`; with manual, `challenger` "
        "(promote it with the approve job; the rollback job moves champion back). Every alias move "
        "is recorded here and in MLflow."
    ),
)
def registered_model(
    context: dg.AssetExecutionContext,
    candidate_model: Candidate,
    params: ParamsResource,
    storage: ArtifactStore,
    registry: ModelRegistry,
) -> dg.MaterializeResult:
    # Blocking checks stop this asset in the gate's own run; this covers a later, separate run.
    gate = passed_gate(context.instance, candidate_model)
    settings = params.load()
    name, run_id = registry.model_name, candidate_model.mlflow_run_id

    existing = registry.version_for_run(name, run_id)
    if existing is not None:
        raise dg.Failure(
            description=f"the candidate of MLflow run {run_id} is already registered as {name} v{existing}; "
            "train a new candidate to register another version"
        )
    champion = identical_champion(registry, candidate_model.manifest_sha256)
    if champion is not None:
        registry.set_run_tags(run_id, {"keel.registered": f"no: identical to v{champion}"})
        return dg.MaterializeResult(
            data_version=dg.DataVersion(f"{name}-v{champion}"),
            metadata={
                "model": name,
                "version": champion,
                "champion_version": champion,
                "registered": False,
                "reason": f"the candidate is byte-identical to champion v{champion} (same manifest sha256); "
                "no new version was registered",
                "mlflow_run_id": run_id,
            },
        )
    mode = registry.promotion
    expected = gate.champion_version if mode == "auto" else registry.alias_version(name, CHALLENGER)
    alias = CHAMPION if mode == "auto" else CHALLENGER
    current = registry.alias_version(name, alias)
    if current != expected:  # fail before registering when the champion already moved on
        raise dg.Failure(
            description=f"{alias} of {name} is v{current} now, but the gate compared this candidate with "
            f"v{expected}; re-run the training job so the gate compares against the current champion"
        )
    tags = {
        **candidate_lineage(candidate_model),
        "keel.dagster_run_id": context.run_id,
        "keel.training_dagster_run_id": candidate_model.run_id,
        "keel.model_family": candidate_model.model_family,
        MANIFEST_TAG: candidate_model.manifest_sha256,  # download() verifies the artifact against it
        "keel.gate": gate.reason,
        **{f"keel.metric.{m}": f"{candidate_model.metrics[m]:.6f}" for m in METRICS},
    }
    reference = drift_reference(settings, storage, candidate_model)  # before registering: a failure leaves no version
    version = registry.register(name, run_id, tags, description=gate.reason)
    reference_sha256 = attach_reference(registry, name, version, reference)
    reason = f"{'auto-promoted' if mode == 'auto' else 'awaiting approval'} after the evaluation gate: {gate.reason}"
    try:
        move = registry.move_alias(
            name,
            alias,
            version,
            expected_from=expected,
            reason=reason,
            actor="registered_model",
            dagster_run_id=context.run_id,
            kind="promote",
        )
    except AliasConflict as error:
        raise dg.Failure(description=f"{name} v{version} is registered but was not made {alias}: {error}") from None
    info = registry.version_info(name, version)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(f"{name}-v{version}"),
        metadata={
            "model": name,
            "version": version,
            "champion_version": registry.champion() or 0,
            "registered": True,
            "promotion": mode,
            **alias_move_metadata(move),
            "roc_auc": float(candidate_model.metrics["roc_auc"]),
            "drift_reference_rows": len(reference),
            "drift_reference_sha256": reference_sha256,
            "training_partitions": candidate_model.training_set.partitions,
            "mlflow_run_id": run_id,
            "lineage": dg.MetadataValue.json({k.removeprefix("keel."): v for k, v in info["tags"].items()}),
        },
    )
