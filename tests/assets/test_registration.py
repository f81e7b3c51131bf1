"""Registration and promotion on the Telco data: a bad model is never promoted, and a promotion never
breaks scoring. Every test works on its own copy of a project whose champion v1 came from one good run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
from filelock import FileLock

from assets.candidate_model import candidate_model
from assets.evaluation_gate import evaluation_gate
from assets.registered_model import launched_by, registered_model
from assets.training_set import training_set
from ml.artifact import MANIFEST, manifest_sha256, write_manifest
from orchestration.deployments import local
from orchestration.promotion import approve, rollback
from resources.registry import REFERENCE_TAG, ModelRegistry
from tests.conftest import REPO, set_params, train, training_assets

MODEL = "telco_churn"
SEED_7 = {"ops": {"candidate_model": {"config": {"seed": 7}}}}  # another model from the same data


@pytest.fixture
def instance(trained_project: Path):
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as inst:
        yield inst


@pytest.fixture
def registry(trained_project: Path) -> ModelRegistry:
    return local(trained_project)["registry"]


def stored(registry: ModelRegistry, version: int) -> Path:
    return Path(registry.version_info(MODEL, version)["source"].removeprefix("file://"))


def gated(project: Path, instance: dg.DagsterInstance):
    """A training run up to and including the gate, without registration."""
    result = dg.materialize(
        training_assets(),
        selection=[training_set, candidate_model, evaluation_gate],
        resources=local(project),
        instance=instance,
        run_config=SEED_7,
    )
    assert result.success
    return result


def register_alone(project: Path, instance: dg.DagsterInstance, **resources):
    return dg.materialize(
        training_assets(),
        selection=[registered_model],
        resources={**local(project), **resources},
        instance=instance,
        raise_on_error=False,
    )


def failure(result, node: str) -> str:
    return result.failure_data_for_node(node).error.message


def test_a_candidate_modified_in_mlflow_after_the_gate_is_not_registered(trained_project, instance, registry):
    gated(trained_project, instance)
    # The gate graded the copy in var/storage; the copy in MLflow's artifact store changes one digit.
    candidate = instance.get_latest_materialization_event(candidate_model.key).asset_materialization.metadata
    logged = registry.client().get_run(candidate["mlflow_run_id"].value).info.artifact_uri.removeprefix("file://")
    model_file = Path(logged) / "model" / "model.txt"
    text = model_file.read_text()
    digit = next(i for i, c in enumerate(text) if c in "123456789" and i > 200)
    model_file.write_text(text[:digit] + str(int(text[digit]) % 9 + 1) + text[digit + 1 :])

    result = register_alone(trained_project, instance)
    assert not result.success
    assert f"{model_file}: sha256" in failure(result, "registered_model")
    assert "nothing was registered" in failure(result, "registered_model")
    assert registry.versions(MODEL) == [1] and registry.champion() == 1


def test_rollback_and_approve_refuse_a_version_that_cannot_be_loaded(trained_project, instance, registry):
    assert train(trained_project, instance, run_config=SEED_7).success  # v2 takes over from v1
    shutil.rmtree(stored(registry, 1))  # v1's artifact is gone from the MLflow artifact store
    config = {"ops": {"rollback_champion": {"config": {"reason": "v2 misbehaves"}}}}
    result = rollback.execute_in_process(
        run_config=config, resources=local(trained_project), instance=instance, raise_on_error=False
    )
    message = failure(result, "rollback_champion")
    assert (
        "champion not moved: 'champion' was not moved to v1: model 'telco_churn' v1: its artifact cannot be" in message
    )
    assert str(stored(registry, 1)) in message and "No such artifact: 'model'" in message
    assert registry.champion() == 2 and [m.to_version for m in registry.alias_history(MODEL)] == [1, 2]

    # A version whose files verify against its manifest but whose model does not parse is refused too.
    unparseable = trained_project / "unparseable"
    shutil.copytree(stored(registry, 2), unparseable)
    info = {k: v for k, v in json.loads((unparseable / MANIFEST).read_text()).items() if k not in ("files", "format")}
    (unparseable / MANIFEST).unlink()
    (unparseable / "model.txt").write_text("not a model\n")
    write_manifest(unparseable, {k: v for k, v in info.items() if k != "format_version"})
    run_id = registry.log_training_run(MODEL, "unparseable", {}, {}, {}, unparseable)
    broken = registry.register(MODEL, run_id, {"manifest_sha256": manifest_sha256(unparseable)})  # no loader given
    approve_config = {"ops": {"approve_challenger": {"config": {"reason": "try", "version": broken}}}}
    result = approve.execute_in_process(
        run_config=approve_config, resources=local(trained_project), instance=instance, raise_on_error=False
    )
    message = failure(result, "approve_challenger")
    assert (
        f"'champion' was not moved to v{broken}: model 'telco_churn' v{broken}: its artifact verifies but does not load"
        in message
    )
    assert registry.champion() == 2


def test_a_registration_stopped_before_its_alias_move_finishes_when_re_executed(trained_project, instance, registry):
    gated(trained_project, instance)
    impatient = ModelRegistry(root=registry.root, tracking_uri=registry.uri(), lock_timeout=0.5, params=registry.params)
    with FileLock(Path(registry.root, "locks", f"{MODEL}.aliases.lock")):  # another alias move holds the lock
        stopped = register_alone(trained_project, instance, registry=impatient)
    message = failure(stopped, "registered_model")
    assert "telco_churn v2 is registered but was not made champion: could not lock" in message
    assert "from failure: registration finds v2 by its MLflow run and finishes the move" in message
    assert registry.versions(MODEL) == [1, 2] and registry.champion() == 1
    # As if the run had also been killed before storing the drift reference.
    registry.client().delete_model_version_tag(MODEL, "2", REFERENCE_TAG)

    resumed = register_alone(trained_project, instance)
    assert resumed.success
    assert registry.versions(MODEL) == [1, 2] and registry.champion() == 2
    assert REFERENCE_TAG in registry.version_info(MODEL, 2)["tags"]
    recorded = instance.get_latest_materialization_event(registered_model.key).asset_materialization.metadata
    assert recorded["resumed"].value is True and recorded["moved_to"].value == "v2"
    # Once finished, a further re-run has nothing left to do, and says so.
    again = register_alone(trained_project, instance)
    assert again.success and registry.versions(MODEL) == [1, 2]
    recorded = instance.get_latest_materialization_event(registered_model.key).asset_materialization.metadata
    assert "already registered as v2, which is champion: nothing left to do" in recorded["reason"].value


def test_the_recorded_actor_is_what_dagster_knows(trained_project, instance, registry):
    import getpass

    assert train(trained_project, instance, run_config=SEED_7).success
    config = {"ops": {"rollback_champion": {"config": {"reason": "check"}}}}
    result = rollback.execute_in_process(run_config=config, resources=local(trained_project), instance=instance)
    move = registry.alias_history(MODEL, "champion")[-1]
    assert move.actor == (
        f"OS user {getpass.getuser()} (run executed in its own process: CLI or Python) via rollback "
        f"(run {result.run_id[:8]})"
    )
    # A run launched through the webserver runs as the server's user: nothing says who clicked.
    launched = SimpleNamespace(
        run_id="0123abcd-0000",
        dagster_run=SimpleNamespace(tags={"dagster/user": "ana@example.com"}, remote_job_origin=object()),
    )
    assert launched_by(launched, "approve") == (
        "unauthenticated launch through the Dagster webserver or API, run tag dagster/user=ana@example.com "
        "via approve (run 0123abcd)"
    )
    assert getpass.getuser() not in launched_by(launched, "approve")
    by_sensor = SimpleNamespace(
        run_id="0123abcd-0000",
        dagster_run=SimpleNamespace(tags={"dagster/sensor_name": "retrain_on_drift"}, remote_job_origin=object()),
    )
    assert launched_by(by_sensor, "registered_model") == "sensor retrain_on_drift via registered_model (run 0123abcd)"


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg
    from orchestration.deployments import local
    from orchestration.promotion import approve
    from resources.registry import ModelRegistry

    project, version, sync, me = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    resources = local(project)
    shared = resources["registry"]
    # Each racer locks in a folder of its own: only the Dagster pool can keep them apart.
    registry = ModelRegistry(root=str(sync / f"locks-{me}"), tracking_uri=shared.uri(), params=shared.params)
    record = ModelRegistry._record

    def slow_record(self, client, move):  # between compare and set, wait for the other racer to get here
        (sync / f"cas-{me}").write_text(str(time.time()))
        deadline = time.monotonic() + 8
        while len(list(sync.glob("cas-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        record(self, client, move)

    ModelRegistry._record = slow_record
    config = {"ops": {"approve_challenger": {"config": {"reason": f"race {me}", "version": version}}}}
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as instance:
        result = approve.execute_in_process(
            run_config=config, resources={**resources, "registry": registry}, instance=instance, raise_on_error=False
        )
    print("won" if result.success else "failed: " + result.failure_data_for_node("approve_challenger").error.message)
    """
)


def test_two_promotions_racing_in_two_processes_are_serialised_by_the_dagster_pool(trained_project, registry):
    v1 = registry.version_info(MODEL, 1)
    for _ in range(2):  # v2 and v3: the same loadable artifact as v1
        registry.register(MODEL, v1["run_id"], {"manifest_sha256": v1["tags"]["manifest_sha256"]})
    sync = trained_project / "sync"
    sync.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = {
        me: subprocess.Popen(
            [sys.executable, "-c", RACER, str(trained_project), str(version), str(sync), me],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, version in (("a", 2), ("b", 3))
    }
    outcome = {}
    for me, proc in racers.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        outcome[me] = out.strip().splitlines()[-1]
    # One move at a time: the second started after the first had finished, so it compared against the
    # first one's result; the history is one chain, never two moves away from the same champion.
    history = registry.alias_history(MODEL, "champion")
    assert [(m.from_version, m.to_version) for m in history[:1]] == [(None, 1)]
    moves = history[1:]
    assert len(moves) == 2 and moves[0].from_version == 1 and moves[1].from_version == moves[0].to_version, outcome
    assert registry.champion() == moves[1].to_version
    assert outcome == {"a": "won", "b": "won"}
    entered = sorted(float((sync / f"cas-{me}").read_text()) for me in "ab")
    assert entered[1] - entered[0] > 7  # the second waited for the first one's pool slot


def test_a_re_run_after_the_challenger_was_approved_has_nothing_left_to_do(trained_project, instance, registry):
    set_params(trained_project, registry={"promotion": "manual"})
    assert train(trained_project, instance, run_config=SEED_7).success  # v2 is challenger
    config = {"ops": {"approve_challenger": {"config": {"reason": "reviewed"}}}}
    assert approve.execute_in_process(run_config=config, resources=local(trained_project), instance=instance).success
    again = register_alone(trained_project, instance)
    assert again.success and registry.versions(MODEL) == [1, 2] and registry.champion() == 2
    recorded = instance.get_latest_materialization_event(registered_model.key).asset_materialization.metadata
    assert "already registered as v2, which is champion: nothing left to do" in recorded["reason"].value
