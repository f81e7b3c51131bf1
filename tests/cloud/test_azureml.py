"""KEEL_DEPLOYMENT=azure: training on Azure ML (loopback fake of the job API) with artifacts in Azurite.

The real `MLClient` sends its requests to `FakeAzureML` (tests/cloud/azure_fakes.py), which runs
each command job's command here, against Azurite, the way an Azure ML compute cluster would. What
this proves and what it does not: docs/cloud.md, "Azure ML".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from azure.core.credentials import AccessToken
from dagster_pipes import decode_env_var

import resources.cloud_job as cloud_job
from assets.candidate_model import candidate_model
from ml import io, runtime
from ml.predictions import part_uris
from orchestration.deployments import DeploymentError, azure, resources_for
from resources.azureml import AzureMLCompute, AzureMLError
from resources.model_cards import read_card
from tests.cloud.azure_fakes import Azurite, FakeAzureML
from tests.cloud.conftest import azurite_blob
from tests.cloud.scoring import DAY, SHARDS, assert_scored_like_local, cloud_day, latest, score_day
from tests.conftest import REPO, train

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "telco_churn"
DATASTORE = "keel_artifacts"
IMAGE = "keelregistry.azurecr.io/keel-ml:test"
BAD_HYPERPARAMETER = {"ops": {"candidate_model": {"config": {"hyperparameters": {"num_leafs": 4}}}}}


class FakeCredential:
    """Stands in for DefaultAzureCredential: the fake job API accepts any bearer token."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("fake-token", int(time.time()) + 3600)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(azurite_blob(), tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture
def container(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh container in Azurite; adlfs and the blob clients reach it through the connection string."""
    from adlfs import AzureBlobFileSystem
    from azure.storage.blob import BlobServiceClient

    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    # MLClient writes AZUREML_CURRENT_CLOUD into os.environ; setting it here makes monkeypatch restore it
    # afterwards (delenv of an absent variable would record nothing and the fake's cloud would leak).
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", os.environ.get("AZUREML_CURRENT_CLOUD", "AzureCloud"))
    name = f"keel-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(name)
    AzureBlobFileSystem.clear_instance_cache()
    yield name
    AzureBlobFileSystem.clear_instance_cache()


@pytest.fixture
def credential(monkeypatch: pytest.MonkeyPatch) -> FakeCredential:
    fake = FakeCredential()
    monkeypatch.setattr(AzureMLCompute, "credential", lambda self: fake)
    return fake


@pytest.fixture
def workspace(
    project: Path, azurite: Azurite, container: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeAzureML]:
    """The Azure ML job API over HTTPS; its jobs run in the project copy (the "image") against Azurite."""
    fake = FakeAzureML(azurite.connection_string, {DATASTORE: container}, image_dir=project, certificate_dir=tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_bundle)  # azure-core's requests transport trusts it
    yield fake
    fake.stop()


def azure_environ(fake: FakeAzureML, azurite: Azurite, container: str) -> dict[str, str]:
    return {
        "KEEL_DEPLOYMENT": "azure",
        "KEEL_AZURE_STORAGE_ROOT": f"az://{container}/keel",
        "KEEL_AZURE_STORAGE_ACCOUNT_URL": azurite.account_url,
        "KEEL_AZUREML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "KEEL_AZUREML_RESOURCE_GROUP": "keel-rg",
        "KEEL_AZUREML_WORKSPACE": "keel-ws",
        "KEEL_AZUREML_COMPUTE": "cpu-cluster",
        "KEEL_AZUREML_IMAGE": IMAGE,
        "KEEL_AZUREML_DATASTORE": DATASTORE,
        "KEEL_AZUREML_RESOURCE_MANAGER_URL": fake.url,
        "KEEL_AZUREML_POLL_SECONDS": "0.2",
        "KEEL_PIPES_MESSAGE_INTERVAL": "1",
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
    }


@pytest.fixture
def resources(project: Path, workspace: FakeAzureML, azurite: Azurite, container: str, credential) -> dict:
    """What KEEL_DEPLOYMENT=azure builds, pointed at the fakes."""
    return resources_for(root=project, environ=azure_environ(workspace, azurite, container))


def blob_names(azurite: Azurite, container: str, prefix: str = "") -> list[str]:
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(azurite.connection_string, container)
    return sorted(b.name for b in client.list_blobs(name_starts_with=prefix))


def read_blob(azurite: Azurite, container: str, name: str) -> bytes:
    from azure.storage.blob import ContainerClient

    return ContainerClient.from_connection_string(azurite.connection_string, container).download_blob(name).readall()


def normalised_job(body: dict, replacements: dict[str, str]) -> dict:
    """The job PUT body with run-specific values replaced by placeholders (the fixture's form).

    The Pipes bootstrap variables are decoded (they name the container and random blob keys), and
    the git properties the SDK adds from the working directory are dropped (they vary by checkout).
    """
    document = json.loads(json.dumps(body))
    properties = document["properties"]
    properties["properties"] = {
        k: v
        for k, v in properties.get("properties", {}).items()
        if not k.startswith(("mlflow.source.git", "azureml.git"))
    }
    env = properties["environmentVariables"]
    for key in ("DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"):
        params = decode_env_var(env[key])
        for field in ("key", "key_prefix"):
            if field in params:
                params[field] = re.sub(r"^[A-Za-z]{30}", "<random>", params[field])
        env[key] = params
    text = json.dumps(document)
    for value, placeholder in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(value, placeholder)
    return json.loads(text)


def assert_matches_fixture(document: dict, name: str) -> None:
    path = FIXTURES / name
    if os.environ.get("KEEL_UPDATE_FIXTURES"):
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"{path} is missing: run with KEEL_UPDATE_FIXTURES=1 once and review the file"
    assert document == json.loads(path.read_text()), f"the request differs from {path.name}"


def run_log(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(run_id))


# ---- the whole training flow ----


def test_training_runs_as_an_azure_ml_job_and_the_model_lands_in_the_registry(
    project, instance, resources, workspace, azurite, container, credential
):
    result = train(project, instance, from_raw_data=True, **resources)
    assert result.success, run_log(instance, result.run_id)
    assert workspace.unexpected == []

    # One command job, as the fixture records it (a change in what we send is a visible diff).
    (put,) = workspace.job_puts()
    job_name = put.path.split("?")[0].rsplit("/", 1)[-1]
    assert job_name.startswith(f"keel-ml-train-{result.run_id[:8]}-")
    replacements = {
        job_name: "<job name>",
        result.run_id: "<run id>",
        container: "<container>",
        azurite.account_url: "<azurite account url>",
    }
    assert_matches_fixture(normalised_job(put.body, replacements), "azureml_command_job.json")
    assert workspace.jobs[job_name].status == "Completed"
    assert any("management" in s or "127.0.0.1" in s for scopes in credential.scopes for s in scopes)

    # The artifact is where the asset asked for it, written by the job's upload-mode output.
    artifact = f"keel/models/candidates/{result.run_id}"
    written = blob_names(azurite, container, artifact + "/")
    assert f"{artifact}/manifest.json" in written and f"{artifact}/model.txt" in written
    candidate = instance.get_latest_materialization_event(candidate_model.key).asset_materialization
    assert candidate.metadata["artifact"].value == f"az://{container}/{artifact}"
    assert 0.83 < candidate.metadata["roc_auc"].value < 0.87

    # Pipes came back through Azure Blob: the job's messages are chunks under the reader's prefix.
    messages = decode_env_var(put.body["properties"]["environmentVariables"]["DAGSTER_PIPES_MESSAGES"])
    assert messages["bucket"] == container
    chunks = blob_names(azurite, container, messages["key_prefix"] + "/")
    assert chunks and b"report_asset_materialization" in b"".join(read_blob(azurite, container, c) for c in chunks)
    assert "holdout ROC AUC" in run_log(instance, result.run_id)  # the entry point's log line, via Pipes

    # The model is in the MLflow registry with the artifact the job wrote.
    registry = resources["registry"]
    assert registry.versions(MODEL) == [1] and registry.alias_version(MODEL, "champion") == 1
    tags = registry.version_info(MODEL, 1)["tags"]
    assert tags["manifest_sha256"] == candidate.metadata["manifest_sha256"].value
    manifest = json.loads(read_blob(azurite, container, f"{artifact}/manifest.json"))
    files = {f.path for f in registry.client().list_artifacts(registry.version_info(MODEL, 1)["run_id"], "model")}
    assert {f"model/{name}" for name in manifest["files"] if "/" not in name} | {"model/plots"} <= files

    # The run's cost is an estimate: the job's time as the orchestrator saw it, on one node of the VM size.
    cost = candidate.metadata["cost_details"].value
    assert cost["platform"] == "azureml" and cost["instance_type"] == "Standard_DS3_v2" and cost["estimate"]
    assert cost["amount"] == pytest.approx(cost["job_seconds"] * 0.293 / 3600)
    assert candidate.metadata["cost_unit"].value == "USD" and cost["cpu_seconds"] > 0
    card = read_card(registry, MODEL, 1)  # the version's card, with the same cost
    assert card["cost"]["training"]["amount"] == pytest.approx(cost["amount"], abs=1e-6)


def test_a_failed_job_fails_the_run_with_its_error_and_registers_nothing(
    project, instance, resources, workspace, azurite, container, monkeypatch
):
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0.5)
    result = train(project, instance, run_config=BAD_HYPERPARAMETER, from_raw_data=True, **resources)
    assert not result.success
    failure = result.failure_data_for_node("candidate_model").error
    (job_name,) = workspace.jobs
    assert workspace.jobs[job_name].status == "Failed"
    assert f"Azure ML job {job_name} ended Failed: UserError: Execution failed." in failure.message
    assert "training.hyperparameters.lightgbm: unknown keys ['num_leafs']" in failure.message
    assert workspace.unexpected == []
    assert blob_names(azurite, container, f"keel/models/candidates/{result.run_id}/") == []
    assert resources["registry"].versions(MODEL) == []


@pytest.mark.parametrize(
    ("interruption", "logged"),
    [
        (dg.DagsterExecutionInterruptedError, "run interrupted: Azure ML job {} was canceled and ended Canceled"),
        (KeyboardInterrupt, "run interrupted: canceling Azure ML job {}"),
    ],
    ids=["terminated", "ctrl-c"],
)
def test_an_interrupted_run_cancels_its_job(
    project, instance, resources, workspace, azurite, container, monkeypatch, interruption, logged
):
    """Dagster raises DagsterExecutionInterruptedError in a step when its run is terminated; Ctrl-C, KeyboardInterrupt."""

    def interrupted_while_running(seconds: float) -> None:  # the pause between status reads
        (job,) = workspace.jobs.values()
        while job.status != "Running":
            time.sleep(0.05)
        raise interruption()

    monkeypatch.setattr(cloud_job, "_wait", interrupted_while_running)
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0.5)
    result = train(project, instance, from_raw_data=True, **resources)
    assert not result.success
    (job_name,) = workspace.jobs
    cancels = [r for r in workspace.requests if r.path.split("?")[0].endswith(f"/jobs/{job_name}/cancel")]
    assert [r.method for r in cancels] == ["POST"]
    assert workspace.jobs[job_name].done.wait(timeout=30) and workspace.jobs[job_name].status == "Canceled"
    logs = run_log(instance, result.run_id)
    assert logged.format(job_name) in logs and "Execution was interrupted" in logs
    assert blob_names(azurite, container, f"keel/models/candidates/{result.run_id}/") == []
    assert resources["registry"].versions(MODEL) == []


# ---- the request, piece by piece ----


def test_inputs_are_files_or_folders_and_outputs_are_written_under_their_parent(
    resources, azurite, container, credential
):
    compute: AzureMLCompute = resources["compute"]
    storage = resources["storage"]
    io.write_json({"a": 1}, storage.uri("in", "config.json"))
    io.write_json({"b": 2}, storage.uri("in", "model", "manifest.json"))
    job = compute.command_job(
        "job-1",
        "ml.score",
        {"config": storage.uri("in", "config.json"), "model": storage.uri("in", "model")},
        {"predictions": storage.uri("out", "predictions.parquet")},
        {},
    )
    assert job.inputs["config"].type == "uri_file" and job.inputs["model"].type == "uri_folder"
    assert job.inputs["model"].path == f"azureml://datastores/{DATASTORE}/paths/keel/in/model"
    assert job.outputs["predictions"].path == f"azureml://datastores/{DATASTORE}/paths/keel/out/"
    assert job.command == (
        "KEEL_AZUREML_PATH_CONFIG=${{inputs.config}} KEEL_AZUREML_PATH_MODEL=${{inputs.model}} "
        "KEEL_AZUREML_PATH_PREDICTIONS=${{outputs.predictions}}/predictions.parquet "
        f"python -m ml.score --config az://{container}/keel/in/config.json --model az://{container}/keel/in/model "
        f"--predictions az://{container}/keel/out/predictions.parquet"
    )


def test_the_request_is_refused_with_the_uri_that_cannot_work(resources, container, credential):
    compute: AzureMLCompute = resources["compute"]
    storage = resources["storage"]
    io.write_json({"a": 1}, storage.uri("in", "config.json"))
    existing = storage.uri("in", "config.json")
    io.write_json({"a": 1}, storage.uri("in", "artifact", "manifest.json"))
    existing_folder = storage.uri("in", "artifact")
    cases = [
        ({"config": "/tmp/config.json"}, {}, "'/tmp/config.json' is not an Azure Blob URI"),
        ({"config": "az://other/config.json"}, {}, "is in container 'other', but datastore 'keel_artifacts' is on"),
        ({"config": storage.uri("in", "nothing.json")}, {}, "input 'config': az://"),
        ({"config": existing}, {"out": existing_folder}, "already exists; artifact folders are never overwritten"),
        ({}, {"out": f"az://{container}/top"}, "must be inside a folder of container"),
    ]
    for inputs, outputs, message in cases:
        with pytest.raises(AzureMLError, match=re.escape(message)):
            compute.command_job("job-1", "ml.train", inputs, outputs, {})
    registered = compute.model_copy(update={"image": None, "environment": "azureml:keel-ml:3"})
    assert registered.command_job("job-1", "ml.train", {"config": existing}, {}, {}).environment == "azureml:keel-ml:3"
    both = compute.model_copy(update={"environment": "azureml:keel-ml:1"})
    with pytest.raises(AzureMLError, match="exactly one of `image` and `environment`"):
        both.command_job("job-1", "ml.train", {"config": existing}, {}, {})


# ---- the deployment and the entry point side ----


def test_the_azure_deployment_names_each_missing_variable():
    environ = {"KEEL_AZURE_STORAGE_ROOT": "az://keel/artifacts", "AZURE_STORAGE_ACCOUNT_NAME": "keelstore"}
    with pytest.raises(
        DeploymentError, match="KEEL_DEPLOYMENT=azure needs the environment variable KEEL_AZUREML_SUBSCRIPTION_ID"
    ):
        azure(environ=environ)
    environ |= {
        "KEEL_AZUREML_SUBSCRIPTION_ID": "s",
        "KEEL_AZUREML_RESOURCE_GROUP": "rg",
        "KEEL_AZUREML_WORKSPACE": "ws",
        "KEEL_AZUREML_COMPUTE": "cpu",
        "KEEL_AZUREML_DATASTORE": "ds",
    }
    with pytest.raises(DeploymentError, match="needs KEEL_AZUREML_IMAGE or KEEL_AZUREML_ENVIRONMENT"):
        azure(environ=environ)
    built = azure(environ=environ | {"KEEL_AZUREML_ENVIRONMENT": "azureml:keel-ml@latest"})
    compute = built["compute"]
    assert built["storage"].root == "az://keel/artifacts"
    assert (compute.container, compute.storage_account_url) == ("keel", "https://keelstore.blob.core.windows.net")
    assert compute.storage_connection_string is None and compute.resource_manager_url == "https://management.azure.com/"
    with pytest.raises(DeploymentError, match="KEEL_AZURE_STORAGE_ROOT='s3://x' must be a az:// URI"):
        azure(environ=environ | {"KEEL_AZURE_STORAGE_ROOT": "s3://x"})
    no_account = {k: v for k, v in environ.items() if k != "AZURE_STORAGE_ACCOUNT_NAME"}
    with pytest.raises(DeploymentError, match="KEEL_AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_ACCOUNT_NAME"):
        azure(environ=no_account | {"KEEL_AZUREML_IMAGE": IMAGE})


def test_the_documented_azure_example_is_a_complete_deployment(tmp_path):
    lines = (REPO / "docs" / "examples" / "cloud" / "azure.env").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert not any(word in name for name in settings for word in ("SECRET", "KEY", "CONNECTION", "SAS"))
    resources = resources_for(root=tmp_path, environ=settings)
    compute = resources["compute"]
    assert isinstance(compute, AzureMLCompute) and resources["storage"].root == settings["KEEL_AZURE_STORAGE_ROOT"]
    assert (compute.container, compute.image, compute.environment) == (
        "keel-artifacts",
        settings["KEEL_AZUREML_IMAGE"],
        None,
    )
    assert compute.storage_account_url == "https://keelartifacts.blob.core.windows.net"


def test_the_code_location_loads_on_the_azure_deployment_without_credentials():
    """orchestration.definitions with azure.env's settings: the same assets, no Azure call at load."""
    lines = (REPO / "docs" / "examples" / "cloud" / "azure.env").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    script = (
        "import json; from orchestration.definitions import defs; g = defs.resolve_asset_graph(); "
        "print(json.dumps({'compute': type(defs.resources['compute']).__name__, "
        "'storage': defs.resources['storage'].root, "
        "'assets': sorted(k.to_user_string() for k in g.get_all_asset_keys())}))"
    )
    found = {}
    for name, extra in {"local": {"KEEL_DEPLOYMENT": "local"}, "azure": settings}.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "KEEL_", "AZUREML_"))}
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env={**env, **extra}, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        found[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["azure"]["compute"] == "AzureMLCompute" and found["azure"]["storage"] == "az://keel-artifacts/keel"
    assert found["azure"]["assets"] == found["local"]["assets"]


def test_the_runtime_swaps_in_the_paths_azure_ml_mounted():
    arguments = {"features": "az://c/f.parquet", "out": "az://c/models/x", "verbose": "1"}
    environ = {"KEEL_AZUREML_PATH_FEATURES": "/mnt/in/f.parquet", "KEEL_AZUREML_PATH_OUT": "/mnt/out/x"}
    assert runtime.resolve(arguments, ["features"], ["out"], environ) == {
        "features": "/mnt/in/f.parquet",
        "out": "/mnt/out/x",
        "verbose": "1",
    }
    with pytest.raises(ValueError, match="'state': KEEL_AZUREML_PATH_STATE is not set"):
        runtime.resolve({**arguments, "state": "az://c/s.json"}, ["features", "state"], ["out"], environ)


def test_the_azure_blob_transport_needs_an_account(monkeypatch):
    from ml import pipes

    monkeypatch.setenv("KEEL_PIPES_TRANSPORT", "azureblob")
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "KEEL_AZURE_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="KEEL_PIPES_TRANSPORT=azureblob needs KEEL_AZURE_STORAGE_ACCOUNT_URL"):
        pipes.transport()
    monkeypatch.setenv("KEEL_AZURE_STORAGE_ACCOUNT_URL", "https://keelstore.blob.core.windows.net")
    loader, writer = pipes.transport()
    assert type(loader).__name__ == "PipesAzureBlobStorageContextLoader"
    assert type(writer).__name__ == "PipesAzureBlobStorageMessageWriter"


# ---- scoring a day ----


@pytest.fixture
def scoring_workspace(
    trained_project: Path, azurite: Azurite, container: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeAzureML]:
    """The fake job API with the trained project copy as its "image" (`workspace` uses the untrained one)."""
    fake = FakeAzureML(
        azurite.connection_string, {DATASTORE: container}, image_dir=trained_project, certificate_dir=tmp_path
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_bundle)
    yield fake
    fake.stop()


def test_a_day_is_scored_as_an_azure_ml_job(trained_project, scoring_workspace, azurite, container, credential):
    """nightly_scoring on KEEL_DEPLOYMENT=azure: the day's file in the artifact container, `python -m ml.score`
    as a command job with the model folder and the rows mounted and the predictions uploaded."""
    resources = resources_for(root=trained_project, environ=azure_environ(scoring_workspace, azurite, container))
    rows_uri, _ = cloud_day(trained_project, f"az://{container}/daily")
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        result = score_day(trained_project, instance, resources)
        assert result.success, run_log(instance, result.run_id)
        scored = assert_scored_like_local(result, instance, resources, rows_uri)
        logs = run_log(instance, result.run_id)
        drift = latest(instance, "drift_report")
        day = f"az://{container}/keel/predictions/day={DAY}"
        predictions = [read_blob(azurite, container, uri.split("/", 3)[3]) for uri in part_uris(day)]
        # Re-scoring the day (a backfill after a new champion) replaces the day's manifest: same model and
        # rows, so the same bytes in every part.
        again = score_day(trained_project, instance, resources)
        assert again.success, run_log(instance, again.run_id)
        assert [read_blob(azurite, container, uri.split("/", 3)[3]) for uri in part_uris(day)] == predictions
        assert part_uris(day)[0].startswith(f"{day}/run-{again.run_id}/")
    assert scoring_workspace.unexpected == []

    put, rescored = scoring_workspace.job_puts()  # the night, then the same day scored again
    job_name = put.path.split("?")[0].rsplit("/", 1)[-1]
    assert job_name.startswith(f"keel-ml-score-{result.run_id[:8]}-")
    assert rescored.path.split("?")[0].rsplit("/", 1)[-1].startswith(f"keel-ml-score-{again.run_id[:8]}-")
    assert scoring_workspace.jobs[job_name].status == "Completed", scoring_workspace.jobs[job_name].stderr
    replacements = {
        job_name: "<job name>",
        scored["model_manifest_sha256"]: "<manifest_sha256>",
        result.run_id: "<run id>",
        container: "<container>",
        azurite.account_url: "<azurite account url>",
    }
    assert_matches_fixture(normalised_job(put.body, replacements), "azureml_score_command_job.json")
    properties = put.body["properties"]
    inputs = {key: (value["jobInputType"], value["uri"]) for key, value in properties["inputs"].items()}
    assert inputs == {
        "config": ("uri_file", f"azureml://datastores/{DATASTORE}/paths/keel/predictions/{DAY}.config.json"),
        "model": (
            "uri_folder",
            f"azureml://datastores/{DATASTORE}/paths/keel/models/registered/{MODEL}/{scored['model_manifest_sha256']}",
        ),
        "rows": ("uri_file", f"azureml://datastores/{DATASTORE}/paths/daily/incoming/{DAY}.parquet"),
    }
    assert (
        properties["outputs"]["parts"]["uri"] == f"azureml://datastores/{DATASTORE}/paths/keel/predictions/day={DAY}/"
    )
    # One command job on 3 nodes, one process each (Azure ML sets each node's NODE_RANK).
    assert properties["resources"]["instanceCount"] == SHARDS
    assert properties["distribution"] == {"distributionType": "PyTorch", "processCountPerInstance": 1}
    # Each node's upload-mode output put its own files into the run's new attempt folder; the launcher
    # added the capture and the manifest; the first run's attempt is kept as the one before.
    names = blob_names(azurite, container, "keel/predictions/")
    for run in (result.run_id, again.run_id):
        attempt = f"keel/predictions/day={DAY}/run-{run}"
        parts = [
            f"{attempt}/part-0000{i}-of-00003{end}"
            for i in range(SHARDS)
            for end in (".capture.parquet", ".json", ".parquet")
        ]
        assert set(parts) | {f"{attempt}/capture.parquet"} <= set(names)
    assert f"keel/predictions/day={DAY}/manifest.json" in names
    # Pipes came back through Azure Blob.
    messages = decode_env_var(properties["environmentVariables"]["DAGSTER_PIPES_MESSAGES"])
    chunks = blob_names(azurite, container, messages["key_prefix"] + "/")
    assert chunks and b"report_asset_materialization" in b"".join(read_blob(azurite, container, c) for c in chunks)
    assert (
        f"scoring {rows_uri} with the model at az://{container}/keel/models/registered/{MODEL}/{scored['model_manifest_sha256']}"
        in logs
    )
    assert f"shard 0 of 3 into az://{container}/keel/predictions/day={DAY}/run-" in logs
    assert "shard 1 of 3" not in logs and "shard 2 of 3" not in logs
    assert drift["verdict"] == "no drift" and drift["report"] == f"az://{container}/keel/monitoring/drift/{DAY}.html"
    drift_html, script, importance = blob_names(
        azurite, container, "keel/monitoring/"
    )  # the day's report, and the model's importance kept once per version
    assert drift_html == f"keel/monitoring/drift/{DAY}.html"
    assert re.fullmatch(
        r"keel/monitoring/drift/evidently-[\w.]+\.js", script
    )  # Evidently's script, shared by the pages
    assert re.fullmatch(r"keel/monitoring/importance/telco_churn/[0-9a-f]{64}\.json", importance)


def test_a_failing_node_fails_the_day_and_the_previous_day_stays(
    trained_project, scoring_workspace, azurite, container, credential
):
    """Scoring the day again with node 1 failing: the job fails, and the day's manifest and parts stay."""
    from ml.predictions import read_predictions

    resources = resources_for(root=trained_project, environ=azure_environ(scoring_workspace, azurite, container))
    cloud_day(trained_project, f"az://{container}/daily")
    day = f"az://{container}/keel/predictions/day={DAY}"
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        assert score_day(trained_project, instance, resources).success
        manifest = read_blob(azurite, container, f"keel/predictions/day={DAY}/manifest.json")
        scores = read_predictions(day)
        scoring_workspace.fail_node = 1
        failed = score_day(trained_project, instance, resources)
        assert not failed.success
        assert "this node fails" in failed.failure_data_for_node("batch_predictions").error.to_string()
        assert read_blob(azurite, container, f"keel/predictions/day={DAY}/manifest.json") == manifest
        assert read_predictions(day).equals(scores)
