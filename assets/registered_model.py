"""registered_model: a candidate that passed the gate, as a new MLflow model version with its lineage.

`registry.promotion` in params.yaml decides its alias: `auto` moves `champion` to it; `manual`
moves `challenger`, and the `approve` job promotes it later. Alias moves are compare-and-set: the
champion is moved only if it is still the version the gate compared the candidate against.

Registration verifies and loads what MLflow holds before a version exists, and is resumable: a
version left without its alias (the run was killed, or the alias lock timed out) is found again by
the candidate's MLflow run id when the run is re-executed, and the move is finished then.
"""

import getpass
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

import ml.io
from assets.candidate_model import candidate_lineage
from assets.cards import card_metadata, make_card, refresh_card
from assets.evaluation_gate import passed_gate
from assets.records import Candidate
from ml.drift import reference_profile
from ml.gate import GateDecision
from ml.params import Params
from ml.predictor import Predictor
from resources.alias_slot import alias_slot
from resources.model_cards import publish_card, read_card
from resources.params import ParamsResource
from resources.registry import (
    ALIAS_POOL,
    CHALLENGER,
    CHAMPION,
    MANIFEST_TAG,
    REFERENCE_TAG,
    AliasConflict,
    AliasMove,
    AliasMoveRefused,
    ModelRegistry,
    RegistryUnavailable,
    UnusableVersion,
)
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
    rows = ml.io.read_parquet(candidate.training_set.reference_uri(storage))
    with storage.local_copy(candidate.artifact_uri(storage)) as local:
        scores = Predictor.load(local, candidate.manifest_sha256).predict(rows)
    return reference_profile(
        rows,
        scores,
        settings.dataset,
        max_rows=settings.drift.reference_rows,
        seed=settings.drift.seed,
    )


def attach_reference(registry: ModelRegistry, name: str, version: int, profile: pd.DataFrame) -> str:
    with tempfile.TemporaryDirectory(prefix="keel-reference-") as tmp:
        path = Path(tmp) / "reference.parquet"
        profile.to_parquet(path, index=False)
        return registry.attach_reference(name, version, path)


def training_cost_tags(registry: ModelRegistry, run_id: str) -> dict[str, str]:
    """The candidate's training cost, as its MLflow run recorded it (candidate_model), for the version's tags."""
    tags = registry.client().get_run(run_id).data.tags
    return {k: v for k, v in tags.items() if k.startswith("keel.cost.")}


def publish_version_card(
    context: dg.AssetExecutionContext,
    candidate: Candidate,
    gate: GateDecision,
    settings: Params,
    storage: ArtifactStore,
    registry: ModelRegistry,
    version: int,
    reference_rows: int | None = None,
) -> dict:
    """Make and store the version's model card; the asset's metadata that shows and links it."""
    info = registry.version_info(registry.model_name, version)
    rows = reference_rows if reference_rows is not None else f"at most {settings.drift.reference_rows}"
    reference = {"sha256": info["tags"].get(REFERENCE_TAG), "rows": rows}
    card, plots = make_card(
        context=context,
        candidate=candidate,
        gate=gate,
        settings=settings,
        storage=storage,
        registry=registry,
        version=version,
        reference=reference,
    )
    return card_metadata(card, publish_card(registry, storage, card, plots))


def load_predictor(directory: Path) -> Predictor:
    """The loader every alias move uses: a version must parse as the scorer will parse it."""
    return Predictor.load(directory)


def launched_by(context: dg.OpExecutionContext | dg.AssetExecutionContext, step: str) -> str:
    """Who asked for this run, as far as Dagster knows it; recorded as the actor of an alias move.

    A run executed in its own process (`dagster job execute`, Python) runs as the OS user who
    started it. A run launched through the instance (the UI, the GraphQL API, `dagster job launch`,
    a sensor or schedule) runs as the server's user, who is not the person: Dagster's open-source
    webserver has no login, so the launch is recorded as unauthenticated, with the run's tags that
    name a user (set by whoever launched it, or by an authenticating Dagster+ deployment).
    """
    run = context.dagster_run
    tags = run.tags
    if tags.get("dagster/sensor_name"):
        who = f"sensor {tags['dagster/sensor_name']}"
    elif tags.get("dagster/schedule_name"):
        who = f"schedule {tags['dagster/schedule_name']}"
    elif run.remote_job_origin is None:
        who = f"OS user {getpass.getuser()} (run executed in its own process: CLI or Python)"
    else:
        who = "unauthenticated launch through the Dagster webserver or API"
    claimed = [f"{key}={tags[key]}" for key in ("dagster/user", "user") if tags.get(key)]
    if claimed:
        who += f", run tag {', '.join(claimed)}"
    return f"{who} via {step} (run {context.run_id[:8]})"


def decided_by(context: dg.OpExecutionContext, registry: ModelRegistry, step: str) -> str:
    """launched_by for a person's decision (approve, rollback, a canary), refused where it cannot be theirs.

    When the registry demands an authenticated MLflow user (the team profile), a run launched by hand
    through the webserver or the API would move the alias with the code server's MLflow identity, not
    the person's: it is refused, and the person runs the job in their own process with their own
    MLflow credentials. Runs of sensors and schedules act as the deployment's automation account.
    """
    tags, run = context.dagster_run.tags, context.dagster_run
    automated = tags.get("dagster/sensor_name") or tags.get("dagster/schedule_name")
    if registry.require_identity and run.remote_job_origin is not None and not automated:
        raise dg.Failure(
            description=f"{step}: refused: this run was launched through the Dagster webserver or API, so it would "
            f"move the alias as the code server's MLflow user ({registry.identity() or 'none'}), not as you. Run "
            f"it in your own shell with your MLflow credentials (MLFLOW_TRACKING_USERNAME / "
            f"MLFLOW_TRACKING_PASSWORD): `dagster job execute -m orchestration.definitions -j {context.job_name} "
            "-c config.yaml` (docs/team.md)"
        )
    return launched_by(context, step)


def alias_move_metadata(move: AliasMove) -> dict:
    return {
        "alias_move": dg.MetadataValue.json(move.to_dict()),
        "alias": move.alias,
        "moved_from": f"v{move.from_version}" if move.from_version is not None else "none",
        "moved_to": f"v{move.to_version}",
        "reason": move.reason,
    }


def unrecorded_move(
    context: dg.AssetExecutionContext, registry: ModelRegistry, name: str, version: int
) -> AliasMove | None:
    """The promotion of `version` (this candidate's version: only registered_model promotes) that its
    attempt never recorded, because the run was killed after the move: no alert and no card said so.
    A registration writes the version's card after its move and before its record, so a version without
    its card is one whose move was not recorded. None when the card is there."""
    if read_card(registry, name, version) is not None:
        return None
    moves = [m for m in registry.alias_history(name) if m.to_version == version and m.kind == "promote"]
    if not moves or moves[-1].dagster_run_id == context.run_id:
        return None
    return moves[-1]


def _missing_alias_error(name: str, version: int, alias: str, error: Exception, context) -> dg.Failure:
    """Why v<version> exists without its alias, and the step that is true for that cause."""
    if isinstance(error, AliasConflict):
        advice = "re-run the training job so the gate compares a candidate against the current champion"
    elif isinstance(error, UnusableVersion):
        advice = "train a new candidate"
    else:  # a held lock or a locked database: the same candidate can finish
        advice = (
            f"re-execute run {context.run_id} from failure: registration finds v{version} by its MLflow run "
            "and finishes the move"
        )
    return dg.Failure(description=f"{name} v{version} is registered but was not made {alias}: {error}. {advice}")


@dg.asset(
    group_name="registry",
    kinds={"mlflow"},
    owners=["team:ml-platform"],
    op_tags={"keel/pool": ALIAS_POOL},
    description=(
        "The MLflow model version made from a candidate that passed evaluation_gate, tagged with "
        "its lineage (data version, code version, git commit, metrics, Dagster run id, artifact "
        "hashes), with its model card (`model_card`, `model_card_url`). With registry.promotion=auto "
        "it becomes `champion`; with manual, `challenger` (promote it with the approve job; the rollback job moves champion back). Every alias move "
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
    with alias_slot(context):  # one alias move at a time, across every run of the instance
        return _register(context, candidate_model, params, storage, registry)


def _register(
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
    mode = registry.promotion
    alias = CHAMPION if mode == "auto" else CHALLENGER

    version = registry.version_for_run(name, run_id)  # set: an earlier attempt registered it
    if version is not None:
        holds = [a for a in (alias, CHAMPION) if registry.alias_version(name, a) == version]  # challenger approved
        if holds:
            # An attempt killed after its move and before its record: the move is recorded now (its alert,
            # the card of the version it replaced), once.
            move = unrecorded_move(context, registry, name, version)
            if move is not None:
                refresh_card(registry, storage, name, move.from_version)
            card = (
                {}
                if read_card(registry, name, version) and move is None
                else publish_version_card(context, candidate_model, gate, settings, storage, registry, version)
            )
            return dg.MaterializeResult(
                data_version=dg.DataVersion(f"{name}-v{version}"),
                metadata={
                    "model": name,
                    "version": version,
                    "champion_version": registry.champion() or 0,
                    "registered": False,
                    "reason": f"the candidate of MLflow run {run_id} is already registered as v{version}, "
                    f"which is {holds[0]}: "
                    + ("recording the move its killed attempt made" if move else "nothing left to do"),
                    "mlflow_run_id": run_id,
                    **(alias_move_metadata(move) if move else {}),
                    **card,
                },
            )
        held = [m for m in registry.alias_history(name) if m.to_version == version]
        if held:
            raise dg.Failure(
                description=f"the candidate of MLflow run {run_id} is already registered as {name} v{version}, "
                f"which was {held[-1].alias} from {held[-1].when} and has been replaced since; train a new "
                f"candidate, or run the approve job with version {version} to make it champion again"
            )
    else:
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
    expected = gate.champion_version if mode == "auto" else registry.alias_version(name, CHALLENGER)
    current = registry.alias_version(name, alias)
    if current != expected:  # fail before registering when the champion already moved on
        kept = f"; v{version} stays registered without an alias" if version is not None else ""
        raise dg.Failure(
            description=f"{alias} of {name} is v{current} now, but the gate compared this candidate with "
            f"v{expected}{kept}; re-run the training job so the gate compares against the current champion"
        )
    resumed = version is not None
    reference = None
    if version is None:
        tags = {
            **candidate_lineage(candidate_model),
            "keel.dagster_run_id": context.run_id,
            "keel.training_dagster_run_id": candidate_model.run_id,
            "keel.model_family": candidate_model.model_family,
            MANIFEST_TAG: candidate_model.manifest_sha256,  # download() verifies the artifact against it
            "keel.gate": gate.reason,
            **{f"keel.metric.{m}": f"{candidate_model.metrics[m]:.6f}" for m in METRICS},
            **training_cost_tags(registry, run_id),
        }
        reference = drift_reference(
            settings, storage, candidate_model
        )  # before registering: a failure leaves no version
        try:
            version = registry.register(name, run_id, tags, description=gate.reason, load=load_predictor)
        except (UnusableVersion, AliasMoveRefused) as error:
            raise dg.Failure(description=str(error)) from None
    info = registry.version_info(name, version)
    if REFERENCE_TAG in info["tags"]:
        reference_sha256, reference_rows = info["tags"][REFERENCE_TAG], None
    else:  # a first attempt, or one stopped between registering and storing the reference
        reference = drift_reference(settings, storage, candidate_model) if reference is None else reference
        reference_sha256, reference_rows = attach_reference(registry, name, version, reference), len(reference)
    reason = f"{'auto-promoted' if mode == 'auto' else 'awaiting approval'} after the evaluation gate: {gate.reason}"
    try:
        move = registry.move_alias(
            name,
            alias,
            version,
            expected_from=expected,
            reason=reason,
            actor=launched_by(context, "registered_model"),
            dagster_run_id=context.run_id,
            kind="promote",
            load=load_predictor,
        )
    except AliasMoveRefused as error:
        raise dg.Failure(description=f"{name} v{version} is registered but was not made {alias}: {error}") from None
    except (AliasConflict, TimeoutError, UnusableVersion, RegistryUnavailable) as error:
        raise _missing_alias_error(name, version, alias, error, context) from None
    # The version that lost the alias keeps a card that says so; this version's card is made now.
    refresh_card(registry, storage, name, move.from_version)
    card = publish_version_card(context, candidate_model, gate, settings, storage, registry, version, reference_rows)
    info = registry.version_info(name, version)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(f"{name}-v{version}"),
        metadata={
            "model": name,
            "version": version,
            "champion_version": registry.champion() or 0,
            "registered": True,
            "resumed": resumed,
            "promotion": mode,
            **alias_move_metadata(move),
            "roc_auc": float(candidate_model.metrics["roc_auc"]),
            **({"drift_reference_rows": reference_rows} if reference_rows is not None else {}),
            "drift_reference_sha256": reference_sha256,
            "training_partitions": candidate_model.training_set.partitions,
            "mlflow_run_id": run_id,
            "lineage": dg.MetadataValue.json({k.removeprefix("keel."): v for k, v in info["tags"].items()}),
            **card,
        },
    )
