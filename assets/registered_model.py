"""registered_model: a candidate that passed the gate, as a new MLflow model version with its lineage.

`registry.promotion` in params.yaml decides its alias: `auto` moves `champion` to it; `manual`
moves `challenger`, and the `approve` job promotes it later. Alias moves are compare-and-set: the
champion is moved only if it is still the version the gate compared the candidate against.
"""

import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.candidate_model import candidate_model, model_name
from assets.evaluation_gate import CHAMPION, CHECK_NAME
from assets.training_set import REFERENCE_ROWS
from data_checks.asset_checks import require_passing_checks
from ml.drift import reference_profile
from ml.predictor import Predictor
from resources.dvc import DvcResource
from resources.registry import MANIFEST_TAG, AliasConflict, ModelRegistry
from resources.storage import ArtifactStore

CHALLENGER = "challenger"
PROMOTIONS = ("auto", "manual")


def promotion_mode(dvc: DvcResource) -> str:
    mode = (dvc.params().get("registry") or {}).get("promotion", "auto")
    if mode not in PROMOTIONS:
        raise dg.Failure(description=f"params.yaml: registry.promotion {mode!r} is not one of {', '.join(PROMOTIONS)}")
    return mode


def _gate_metadata(context: dg.AssetExecutionContext) -> dict:
    key = dg.AssetCheckKey(candidate_model.key, CHECK_NAME)
    record = context.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    return {k: v.value for k, v in record.evaluation.metadata.items()}


def identical_champion(registry: ModelRegistry, name: str, manifest_sha256: str) -> int | None:
    """The champion's version when its artifact is byte-identical to the candidate's, else None.

    Same data, code and seed give the same bytes; a second version of them would only be noise.
    """
    champion = registry.alias_version(name, CHAMPION)
    if champion is not None and registry.version_info(name, champion)["tags"].get(MANIFEST_TAG) == manifest_sha256:
        return champion
    return None


def drift_reference(dvc: DvcResource, storage: ArtifactStore, candidate: dict) -> pd.DataFrame:
    """The training set's newest holdout rows scored by the candidate: stored with the version as the
    reference its drift reports compare each day against, so they never re-read the training set."""
    drift = dvc.params().get("drift") or {}
    predictor = Predictor.load(storage.local_copy(candidate["artifact"]), candidate["manifest_sha256"])
    rows = storage.read_parquet(*REFERENCE_ROWS)
    return reference_profile(
        rows,
        predictor.predict(rows),
        dvc.dataset_spec(),
        max_rows=int(drift.get("reference_rows", 20000)),
        seed=int(drift.get("seed", 0)),
    )


def attach_reference(registry: ModelRegistry, name: str, version: int, profile: pd.DataFrame) -> str:
    with tempfile.TemporaryDirectory(prefix="keel-reference-") as tmp:
        path = Path(tmp) / "reference.parquet"
        profile.to_parquet(path, index=False)
        return registry.attach_reference(name, version, path)


def alias_move_metadata(move) -> dict:
    return {
        "alias_move": dg.MetadataValue.json(move.to_dict()),
        "alias": move.alias,
        "moved_from": f"v{move.from_version}" if move.from_version is not None else "none",
        "moved_to": f"v{move.to_version}",
        "reason": move.reason,
    }


@dg.asset(
    deps=[candidate_model],
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
    context: dg.AssetExecutionContext, dvc: DvcResource, storage: ArtifactStore, registry: ModelRegistry
) -> dg.MaterializeResult:
    # Blocking checks stop this asset in the gate's own run; this guard covers a later, separate run.
    require_passing_checks(context, candidate_model.key, [CHECK_NAME], what="evaluation gate")
    gate = _gate_metadata(context)
    event = context.instance.get_latest_materialization_event(candidate_model.key)
    candidate = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    name, run_id = model_name(dvc), candidate["mlflow_run_id"]

    existing = registry.version_for_run(name, run_id)
    if existing is not None:
        raise dg.Failure(
            description=f"the candidate of MLflow run {run_id} is already registered as {name} v{existing}; "
            "train a new candidate to register another version"
        )
    champion = identical_champion(registry, name, candidate["manifest_sha256"])
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
    mode = promotion_mode(dvc)
    expected = gate.get("champion_version") if mode == "auto" else registry.alias_version(name, CHALLENGER)
    alias = CHAMPION if mode == "auto" else CHALLENGER
    current = registry.alias_version(name, alias)
    if current != expected:  # fail before registering when the champion already moved on
        raise dg.Failure(
            description=f"{alias} of {name} is v{current} now, but the gate compared this candidate with "
            f"v{expected}; re-run the training job so the gate compares against the current champion"
        )
    metric_names = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "f1")
    tags = {
        "keel.data_version": candidate["data_version"],
        "keel.training_set_version": candidate["training_set_version"],
        "keel.training_partitions": candidate["training_partitions"],
        "keel.code_version": candidate["code_version"],
        "keel.git_commit": candidate["git_commit"],
        "keel.dagster_run_id": context.run_id,
        "keel.training_dagster_run_id": candidate["dagster_run_id"],
        "keel.model_family": candidate["model_family"],
        MANIFEST_TAG: candidate["manifest_sha256"],  # download() verifies the artifact against it
        "keel.gate": gate["reason"],
        **{f"keel.metric.{m}": f"{candidate[m]:.6f}" for m in metric_names},
    }
    reference = drift_reference(dvc, storage, candidate)  # before registering: a failure leaves no version
    version = registry.register(name, run_id, tags, description=gate["reason"])
    reference_sha256 = attach_reference(registry, name, version, reference)
    reason = f"{'auto-promoted' if mode == 'auto' else 'awaiting approval'} after the evaluation gate: {gate['reason']}"
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
            "champion_version": registry.alias_version(name, CHAMPION) or 0,
            "registered": True,
            "promotion": mode,
            **alias_move_metadata(move),
            "roc_auc": float(candidate["roc_auc"]),
            "drift_reference_rows": len(reference),
            "drift_reference_sha256": reference_sha256,
            "training_partitions": candidate["training_partitions"],
            "mlflow_run_id": run_id,
            "lineage": dg.MetadataValue.json({k.removeprefix("keel."): v for k, v in info["tags"].items()}),
        },
    )
