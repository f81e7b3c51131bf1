"""The team instance end to end, as separate processes started from team/Procfile: Postgres (as the postgres
user), MLflow's tracking server with its basic-auth app and proxied artifacts, the gRPC code server, the
daemon and two webservers. Runs are launched over GraphQL as the UI launches them and the daemon runs
them: a champion is trained and registered; a day is scored after the daemon and the run's worker were
killed mid-run (the code server fails the run, the restarted daemon's run retries score the day again). Runs and events are read
back from Postgres, the model from the artifact folder behind MLflow; anonymous MLflow requests get 401,
a read-only user's approve is refused and moves nothing, an editor's approve is recorded with their name.
Last, the daily loop of test_daemon.py (score, labels, retrain on drift) under the same assertions."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.conftest import clear_daily_files
from tests.e2e.daily_loop import assert_the_daily_loop, tell_the_story, wait_for_the_daily_loop, write_day_and_labels
from tests.team.services import ADMIN, Team, postgres_missing, procfile

pytestmark = pytest.mark.skipif(postgres_missing() is not None, reason=postgres_missing() or "")

MODEL = "telco_churn"
SERVICE_DEADLINE = 240  # seconds for every server to answer on busy cores
RUN_DEADLINE = 600
# The daemon polls running runs every 5 s here (60 s in team/dagster.yaml) so a dead run is seen soon.
FAST_MONITORING = {"run_monitoring": {"poll_interval_seconds": 5}}


def graphql(port: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


LAUNCH = """
mutation Launch($job: String!, $tags: [ExecutionTag!]) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: "keel", repositoryName: "__repository__", jobName: $job},
    runConfigData: {}, executionMetadata: {tags: $tags}
  }) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def launch(port: str, job: str, tags: dict[str, str] | None = None) -> dict:
    tags = [{"key": k, "value": v} for k, v in (tags or {}).items()]
    return graphql(port, LAUNCH, {"job": job, "tags": tags})["data"]["launchRun"]


def wait_run(instance: dg.DagsterInstance, run_id: str, team: Team, statuses=None) -> dg.DagsterRun:
    statuses = statuses or {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + RUN_DEADLINE
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in statuses:
            return run
        time.sleep(2)
    raise AssertionError(f"run {run_id} is {run and run.status} after {RUN_DEADLINE}s\n{team.log('daemon')}")


def failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(e.message or "" for e in instance.all_logs(run_id) if e.message)[-4000:]


@pytest.fixture(scope="module")
def team(project_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    project = tmp_path_factory.mktemp("team") / "project"
    shutil.copytree(project_template, project, symlinks=True)
    team = Team.create(project, FAST_MONITORING)
    try:
        team.start_all()
        # A second webserver on the same instance and code server; read-only, as viewers would get it.
        team.start("web2", procfile(project)["web"], KEEL_WEB_PORT=(web2 := str(_free_port())), KEEL_WEB_READ_ONLY="1")
        team.env["WEB2_PORT"] = web2
        deadline = time.monotonic() + SERVICE_DEADLINE
        team.wait_http("mlflow", f"{team.mlflow_url}/health", deadline)
        for name, port in (("web", team.env["KEEL_WEB_PORT"]), ("web2", web2)):
            team.wait_http(name, f"http://127.0.0.1:{port}/server_info", deadline)
        _wait_location_loaded(team, deadline)
        yield team
    finally:
        team.stop_all()
        team.remove()


def _free_port() -> int:
    from tests.team.services import free_port

    return free_port()


def _wait_location_loaded(team: Team, deadline: float) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
    while True:
        entries = graphql(team.env["KEEL_WEB_PORT"], query)["data"]["workspaceOrError"]["locationEntries"]
        if (
            entries
            and entries[0]["locationOrLoadError"]
            and entries[0]["locationOrLoadError"]["__typename"] == ("RepositoryLocation")
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the code location did not load: {entries}\n{team.log('code')}")
        time.sleep(2)


@pytest.fixture(scope="module")
def instance(team: Team) -> Iterator[dg.DagsterInstance]:
    saved = {k: os.environ.get(k) for k in team.shell_env() if k.startswith(("KEEL_PG_", "KEEL_DAGSTER_DB"))}
    os.environ.update({k: v for k, v in team.shell_env().items() if k in saved})
    with dg.DagsterInstance.from_config(str(team.home)) as instance:
        yield instance
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def champion(team: Team, instance: dg.DagsterInstance) -> str:
    """train_model launched over GraphQL on the first webserver; the daemon runs it from the queue."""
    launched = launch(team.env["KEEL_WEB_PORT"], "train_model")
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run = wait_run(instance, launched["run"]["runId"], team)
    assert run.status == dg.DagsterRunStatus.SUCCESS, failure_text(instance, run.run_id)
    return run.run_id


def admin_env(team: Team) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": team.env["MLFLOW_AUTH_ADMIN_PASSWORD"]}


class as_user:
    """MLflow credentials in this process's environment, as a person's shell would hold them."""

    def __init__(self, team: Team, username: str, password: str):
        self.values = {
            "MLFLOW_TRACKING_URI": team.mlflow_url,
            "MLFLOW_TRACKING_USERNAME": username,
            "MLFLOW_TRACKING_PASSWORD": password,
        }

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_anonymous_requests_to_mlflow_are_refused(team: Team):
    for path in ("/api/2.0/mlflow/experiments/search?max_results=1", "/api/2.0/mlflow/registered-models/search"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{team.mlflow_url}{path}", timeout=30)
        assert refused.value.code == 401


def test_a_champion_trained_through_the_daemon_is_in_postgres_and_the_artifact_store(
    team: Team, instance: dg.DagsterInstance, champion: str
):
    from resources.registry import ModelRegistry

    run = instance.get_run_by_id(champion)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    engine = sa.create_engine(team.pg_url("dagster"))
    with engine.connect() as db:
        stored = db.execute(sa.text("select status from runs where run_id = :id"), {"id": champion}).scalar_one()
        events = db.execute(sa.text("select count(*) from event_logs where run_id = :id"), {"id": champion}).scalar()
        materialized = db.execute(
            sa.text(
                "select count(*) from event_logs where run_id = :id and dagster_event_type = 'ASSET_MATERIALIZATION'"
            ),
            {"id": champion},
        ).scalar()
    engine.dispose()
    assert stored == "SUCCESS" and events > 20 and materialized >= 5
    with as_user(team, ADMIN, team.env["MLFLOW_AUTH_ADMIN_PASSWORD"]):
        registry = ModelRegistry(root=str(team.folder / "locks"), tracking_uri=team.mlflow_url)
        assert registry.uri() == team.mlflow_url
        assert registry.alias_version(MODEL, "champion") == 1
        info = registry.version_info(MODEL, 1)
        move = registry.alias_history(MODEL, "champion")[-1]
    # The model's files are in the artifact folder behind the tracking server, as the version names them.
    assert info["source"].startswith("mlflow-artifacts:/")
    manifests = list((team.folder / "mlflow-artifacts").rglob(f"{info['run_id']}/**/model/manifest.json"))
    assert len(manifests) == 1, list((team.folder / "mlflow-artifacts").rglob("manifest.json"))
    # The registration moved champion as the code server's MLflow user: authenticated, and named.
    assert move.mlflow_user == ADMIN and move.actor.startswith(f"MLflow user {ADMIN} (authenticated); ")
    engine = sa.create_engine(team.pg_url("mlflow"))
    with engine.connect() as db:
        aliases = db.execute(sa.text("select alias, version from registered_model_aliases")).all()
    engine.dispose()
    assert ("champion", 1) in [tuple(a) for a in aliases]


def test_two_webservers_serve_the_same_instance_at_once(team: Team, champion: str):
    query = "{ runsOrError { ... on Runs { results { runId status } } } }"
    ports = [team.env["KEEL_WEB_PORT"], team.env["WEB2_PORT"]]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda port: graphql(port, query), ports * 2))
    seen = [{r["runId"] for r in a["data"]["runsOrError"]["results"]} for a in answers]
    assert all(champion in runs for runs in seen) and all(runs == seen[0] for runs in seen)
    # The read-only one shows everything and launches nothing.
    refused = launch(team.env["WEB2_PORT"], "train_model")
    assert refused["__typename"] == "UnauthorizedError", refused


def test_a_read_only_user_cannot_move_the_champion_and_an_editor_is_recorded(
    team: Team, instance: dg.DagsterInstance, champion: str
):
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    from orchestration.deployments import local
    from orchestration.promotion import approve
    from resources.model_cards import read_card
    from resources.registry import ModelRegistry

    with as_user(team, ADMIN, team.env["MLFLOW_AUTH_ADMIN_PASSWORD"]):
        auth = get_app_client("basic-auth", tracking_uri=team.mlflow_url)
        auth.create_user("reader", "reader-password-1")
        auth.create_user("alice", "alice-password-1")
        client = MlflowClient(team.mlflow_url, team.mlflow_url)
        v1 = client.get_model_version(MODEL, "1")
        # Alice may move the model's aliases, and write the versions' model cards into their runs.
        auth.grant_user_permission("alice", "registered_model", MODEL, "MANAGE")
        auth.grant_user_permission("alice", "experiment", client.get_run(v1.run_id).info.experiment_id, "EDIT")
        # A second version of the same files, to be approved.
        tags = {k: v for k, v in v1.tags.items() if not k.startswith(("keel.model_card", "keel.champion"))}
        client.create_model_version(MODEL, v1.source, run_id=v1.run_id, tags=tags)  # without v1's card
        registry = ModelRegistry(root=str(team.project / "var" / "mlflow"), tracking_uri=team.mlflow_url)
        before = registry.alias_history(MODEL)

    config = team.folder / "approve.yaml"
    config.write_text(json.dumps({"ops": {"approve_challenger": {"config": {"version": 2, "reason": "reviewed"}}}}))
    reader = team.shell_env(MLFLOW_TRACKING_USERNAME="reader", MLFLOW_TRACKING_PASSWORD="reader-password-1")
    refused = subprocess.run(
        ["dagster", "job", "execute", "-m", "orchestration.definitions", "-j", "approve", "-c", str(config)],
        cwd=team.project,
        env=reader,
        capture_output=True,
        text=True,
    )
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output[-3000:]
    assert "refused by the MLflow server for user 'reader'" in output, output[-3000:]
    assert "needs MANAGE permission on registered model 'telco_churn'" in output and "nothing was moved" in output
    with as_user(team, "reader", "reader-password-1"):
        assert registry.alias_version(MODEL, "champion") == 1  # the reader can read it, and it did not move
        assert registry.alias_history(MODEL) == before
        assert registry.download(MODEL, 1).joinpath("manifest.json").is_file()  # and load the champion

    # An editor approves in their own process: the move, the history and the card name them.
    os.environ["KEEL_INSTANCE"] = "team"
    try:
        with as_user(team, "alice", "alice-password-1"):
            result = approve.execute_in_process(
                run_config=json.loads(config.read_text()), resources=local(team.project), instance=instance
            )
            assert result.success
            assert registry.alias_version(MODEL, "champion") == 2
            move = registry.alias_history(MODEL, "champion")[-1]
            card = read_card(registry, MODEL, 1)  # the card of the version that lost the alias
    finally:
        os.environ.pop("KEEL_INSTANCE", None)
    assert move.mlflow_user == "alice" and move.kind == "approve"
    assert card["alias_history"][-1]["to_version"] == 2
    assert card["alias_history"][-1]["actor"].startswith("MLflow user alice (authenticated); OS user")


def test_a_day_scored_through_the_daemon_survives_the_daemon_and_its_run_dying(
    team: Team, instance: dg.DagsterInstance, champion: str
):
    import psutil

    import ml.io
    from ml.params import load_params
    from ml.simulate import simulate_day, unseen_rows, write_snapshot

    params = load_params(team.project / "params.yaml")
    snapshot, _ = simulate_day(
        unseen_rows(ml.io.read_parquet(params.raw_uri), params), params.dataset, params.simulation, 1
    )
    write_snapshot(snapshot, params.daily, 1, team.project)
    day = str(params.daily.date(1))
    # A run whose worker died stays STARTED until it passes its maximum runtime: run monitoring then fails it.
    launched = launch(
        team.env["KEEL_WEB_PORT"], "nightly_scoring", {"dagster/partition": day, "dagster/max_runtime": "120"}
    )
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, pid = time.monotonic() + RUN_DEADLINE, None
    while pid is None:
        started = [e.message for e in instance.all_logs(run_id) if e.message and "Started process for run" in e.message]
        if started:
            pid = int(re.search(r"pid: (\d+)", started[0]).group(1))
        assert time.monotonic() < deadline, team.log("daemon")
        time.sleep(0.5)
    # The machine's Dagster processes crash mid-run: the daemon, and the run's worker with its children.
    team.kill("daemon")
    worker = psutil.Process(pid)
    for process in [*worker.children(recursive=True), worker]:
        process.send_signal(signal.SIGKILL)
    # The code server sees its run process die and fails the run (or, had it died too, run monitoring
    # fails it once past its maximum runtime); the retry needs the daemon, which is down until restarted.
    time.sleep(5)
    assert not instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
    team.start("daemon")
    failed = wait_run(instance, run_id, team)
    assert failed.status == dg.DagsterRunStatus.FAILURE, failure_text(instance, run_id)
    deadline = time.monotonic() + RUN_DEADLINE
    while not (retries := instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))):
        assert time.monotonic() < deadline, f"no retry of {run_id}\n{team.log('daemon')}"
        time.sleep(2)
    retried = wait_run(instance, retries[0].run_id, team)
    assert retried.status == dg.DagsterRunStatus.SUCCESS, failure_text(instance, retried.run_id)
    assert retried.tags["dagster/retry_number"] == "1" and retried.tags["dagster/partition"] == day
    scored = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("batch_predictions"), asset_partitions=[day]), limit=1
    ).records
    assert scored and scored[0].run_id == retried.run_id
    assert int(scored[0].asset_materialization.metadata["model_version"].value) in (1, 2)


SENSORS = """
{ repositoryOrError(repositorySelector: {repositoryLocationName: "keel", repositoryName: "__repository__"}) {
    ... on Repository { sensors { name } } } }
"""
START_SENSOR = """
mutation Start($name: String!) {
  startSensor(sensorSelector: {repositoryLocationName: "keel", repositoryName: "__repository__", sensorName: $name}) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def test_the_daily_loop_passes_on_the_team_instance_with_the_default_instances_assertions(
    team: Team, instance: dg.DagsterInstance, champion: str
):
    """test_daemon.py's loop, the sensors turned on over GraphQL as a person turns them on in the UI.
    Last in this module: it leaves the sensors on, and the days before it are the other tests'."""
    from resources.registry import ModelRegistry

    with as_user(team, ADMIN, team.env["MLFLOW_AUTH_ADMIN_PASSWORD"]):
        registry = ModelRegistry(root=str(team.folder / "locks"), tracking_uri=team.mlflow_url)
        champion_before = registry.alias_version(MODEL, "champion")
    clear_daily_files(team.project)
    tell_the_story(team.project)
    day = write_day_and_labels(team.project, 2)
    repository = graphql(team.env["KEEL_WEB_PORT"], SENSORS)["data"]["repositoryOrError"]
    names = [sensor["name"] for sensor in repository["sensors"]]
    assert {"incoming_arrived", "labels_arrived", "retrain_on_drift"} <= set(names)
    for name in names:
        started = graphql(team.env["KEEL_WEB_PORT"], START_SENSOR, {"name": name})["data"]["startSensor"]
        assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started
    loop = wait_for_the_daily_loop(
        instance, day, lambda: team.log("daemon", tail=10**9), lambda: team.processes["daemon"].poll() is None
    )
    assert_the_daily_loop(instance, day, loop, team.log("daemon", tail=10**9), champion_before)
