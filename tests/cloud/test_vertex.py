"""The Vertex AI backend against the GCS emulator and a loopback fake of the CustomJob REST API.

gcp-storage-emulator (in a thread, on a free port, in memory) is Cloud Storage for the orchestrator,
the job and the Pipes messages, reached through STORAGE_EMULATOR_HOST. `FakeVertex`
(vertex_fakes.py) answers the REST calls and runs each job's container command locally with the
environment the request sent, so the real `python -m ml.train` reads its inputs from and writes its
artifact and its Pipes messages to the emulator.
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

import resources.cloud_job as cloud_job
from assets.candidate_model import candidate_model
from assets.registered_model import registered_model
from ml import io, runtime
from ml.cost import run_cost
from ml.params import load_params
from ml.predictions import read_predictions
from orchestration import deployments
from resources.compute import ComputeBackend
from resources.storage import ArtifactStore
from resources.vertex import (
    PipesGCSContextInjector,
    PipesGCSMessageReader,
    VertexCompute,
    check_endpoint,
    custom_job_display_name,
    with_environment,
)
from tests.cloud.scoring import DAY, SHARDS, assert_scored_like_local, cloud_day, latest, score_day
from tests.cloud.vertex_fakes import PROJECT_NUMBER, FakeVertex, GcsEmulator
from tests.conftest import REPO, train

FIXTURES = Path(__file__).parent / "fixtures"
BUCKET = "keel-artifacts"
MODEL = "telco_churn"
GCP_REQUIRED = {
    "KEEL_GCS_ROOT": f"gs://{BUCKET}/keel",
    "KEEL_VERTEX_PROJECT": "keel-test",
    "KEEL_VERTEX_LOCATION": "europe-west4",
    "KEEL_VERTEX_IMAGE_URI": "europe-west4-docker.pkg.dev/keel-test/keel/keel-ml:test",
    "KEEL_VERTEX_SERVICE_ACCOUNT": "keel-training@keel-test.iam.gserviceaccount.com",
}
DISPLAY_NAME = re.compile(r"keel-ml-(?:train|score)-[0-9a-f]{8}-[0-9a-f]{6}")


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An empty in-memory Cloud Storage with the bucket; yields the variables that point clients at it."""
    import gcsfs
    from google.cloud import storage

    emulator = GcsEmulator()
    env = {
        "STORAGE_EMULATOR_HOST": emulator.start(),
        "NO_GCE_CHECK": "true",  # no probing for a GCE metadata server (slow off GCP)
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # the emulator has no bucket-type API
    }
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    gcsfs.GCSFileSystem.clear_instance_cache()  # a cached instance would still talk to an earlier emulator
    storage.Client().create_bucket(BUCKET)
    yield env
    gcsfs.GCSFileSystem.clear_instance_cache()
    emulator.stop()


@pytest.fixture
def vertex(gcs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVertex]:
    """The fake CustomJob API; VertexCompute calls it with anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials

    fake = FakeVertex(job_env=gcs, work_dir=tmp_path / "vertex-jobs").start()
    monkeypatch.setattr(VertexCompute, "credentials", lambda self: AnonymousCredentials())
    yield fake
    fake.stop()


def gcp_settings(vertex: FakeVertex, **overrides: str) -> dict[str, str]:
    """The environment a user sets for KEEL_DEPLOYMENT=gcp (docs/examples/cloud/gcp.env), on the fakes."""
    return {
        "KEEL_DEPLOYMENT": "gcp",
        **GCP_REQUIRED,
        "KEEL_VERTEX_API_ENDPOINT": vertex.url,
        "KEEL_VERTEX_POLL_SECONDS": "0.5",
        "KEEL_PIPES_MESSAGE_INTERVAL": "0.5",
        **overrides,
    }


def blobs(prefix: str) -> list[str]:
    from google.cloud import storage

    return sorted(blob.name for blob in storage.Client().list_blobs(BUCKET, prefix=prefix))


def upload(local: str, uri: str) -> None:
    from google.cloud import storage

    storage.Client().bucket(BUCKET).blob(uri.removeprefix(f"gs://{BUCKET}/")).upload_from_filename(local)


def decode_pipes_param(value: str) -> dict[str, Any]:
    return json.loads(zlib.decompress(base64.b64decode(value)))


def container_env(request: dict[str, Any]) -> dict[str, str]:
    container = request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    return {item["name"]: item["value"] for item in container["env"]}


def normalised(request: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The request with its volatile parts (run id, random name suffix, Pipes params) replaced by placeholders."""
    text = DISPLAY_NAME.sub("<display_name>", json.dumps(request, sort_keys=True).replace(run_id, "<run_id>"))
    text = re.sub(r"(/models/registered/[^/\"]+/)[0-9a-f]{64}", r"\1<manifest_sha256>", text)  # content-keyed
    document = json.loads(text)
    for pool in document["jobSpec"]["workerPoolSpecs"]:
        for item in pool["containerSpec"]["env"]:
            if item["name"] in ("DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"):
                item["value"] = "<encoded pipes params>"
    return document


def fixture(name: str, request: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The expected request body; KEEL_UPDATE_FIXTURES=1 rewrites it from this run (review the diff)."""
    path = FIXTURES / name
    if os.environ.get("KEEL_UPDATE_FIXTURES") == "1":
        path.write_text(json.dumps(normalised(request, run_id), indent=2, sort_keys=True) + "\n")
    return json.loads(path.read_text())


def run_log(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(run_id))


# --- one entry point call ------------------------------------------------------------------------


def test_a_custom_job_runs_the_entry_point_and_writes_where_the_asset_asked(vertex, training_inputs):
    """The request body (fixture), Pipes through GCS both ways, the artifact at the asked gs:// URI."""
    resources = deployments.resources_for(environ=gcp_settings(vertex))
    storage, compute = resources["storage"], resources["compute"]
    inputs = {
        "features": storage.uri("training_set", "features.parquet"),
        "state": storage.uri("training_set", "feature_state.json"),
        "config": storage.uri("models", "candidates", "run.config.json"),
    }
    for name, uri in inputs.items():
        upload(training_inputs[name], uri)
    out = storage.uri("models", "candidates", "run")
    reports = []

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> dg.MaterializeResult:
        result = compute.run(context, "ml.train", inputs, {"out": out}).get_materialize_result()
        reports.append(result.metadata["report"].value)
        return result

    instance = dg.DagsterInstance.ephemeral()
    outcome = dg.materialize([trained], resources={"compute": compute}, instance=instance, raise_on_error=False)
    (job,) = vertex.jobs.values()
    assert outcome.success, job.stderr

    (request,) = vertex.requests
    assert normalised(request, outcome.run_id) == fixture("vertex_custom_job.json", request, outcome.run_id)
    display_name = request["displayName"]
    environment = container_env(request)
    assert environment["KEEL_PIPES_TRANSPORT"] == "gcs"
    context_pointer = decode_pipes_param(environment["DAGSTER_PIPES_CONTEXT"])
    assert context_pointer["bucket"] == BUCKET and context_pointer["key"].startswith(
        f"keel/pipes/{display_name}/context-"
    )
    messages = decode_pipes_param(environment["DAGSTER_PIPES_MESSAGES"])
    assert messages["bucket"] == BUCKET and messages["key_prefix"].startswith(f"keel/pipes/{display_name}/messages/")
    # The entry point wrote its messages to GCS and Dagster read them from there; the context is cleaned up.
    pipes_files = blobs(f"keel/pipes/{display_name}/")
    assert f"{messages['key_prefix']}/1.json" in pipes_files
    assert not [name for name in pipes_files if "/context-" in name]
    (report,) = reports
    assert report["artifact_uri"] == out and report["inputs"] == inputs
    assert 0.83 < report["metrics"]["roc_auc"] < 0.87
    # The artifact is where the asset asked for it, complete, written by the job itself.
    artifact = blobs("keel/models/candidates/run/")
    assert {f"keel/models/candidates/run/{name}" for name in report["files"]} | {
        "keel/models/candidates/run/manifest.json"
    } == set(artifact)
    logs = run_log(instance, outcome.run_id)
    assert "holdout ROC AUC" in logs  # a log line of the entry point, through GCS
    name = f"projects/{PROJECT_NUMBER}/locations/europe-west4/customJobs/1000"
    for state in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"):
        assert logs.count(f"Vertex AI custom job {name}: {state}") <= 1  # transitions, not every poll
    assert f"Vertex AI custom job {name}: JOB_STATE_SUCCEEDED" in logs
    metadata = outcome.asset_materializations_for_node("trained")[0].metadata
    assert metadata["vertex_custom_job"].value == name
    # The cost estimate's terms: the job's startTime to endTime, the machine type, the replicas.
    usage = metadata["job_usage"].value
    started, ended = (datetime.fromisoformat(job.times[k].replace("Z", "+00:00")) for k in ("startTime", "endTime"))
    assert usage == {
        "platform": "vertex",
        "instance_type": "n1-standard-4",
        "instance_count": 1,
        "seconds": round((ended - started).total_seconds(), 3),
    }
    cost = run_cost(report["usage"], usage, load_params().costs)
    assert cost["estimate"] and cost["amount"] == pytest.approx(usage["seconds"] * 0.219 / 3600)


def test_a_failing_entry_point_fails_the_step_with_the_job_error_and_its_own_message(vertex, training_inputs, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"model": "xgboost"}))
    compute = deployments.resources_for(environ=gcp_settings(vertex))["compute"]
    inputs = {
        "features": f"gs://{BUCKET}/keel/features.parquet",
        "state": f"gs://{BUCKET}/keel/state.json",
        "config": f"gs://{BUCKET}/keel/bad.json",
    }
    upload(training_inputs["features"], inputs["features"])
    upload(training_inputs["state"], inputs["state"])
    upload(str(tmp_path / "bad.json"), inputs["config"])

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        compute.run(context, "ml.train", inputs, {"out": f"gs://{BUCKET}/keel/model"})

    instance = dg.DagsterInstance.ephemeral()
    outcome = dg.materialize([trained], resources={"compute": compute}, instance=instance, raise_on_error=False)
    assert not outcome.success
    error = outcome.failure_data_for_node("trained").error.to_string()
    assert "ended JOB_STATE_FAILED: The replica workerpool0-0 exited with a non-zero status of 1" in error
    # The entry point's one-line error came back through GCS as an ERROR line of the run's log.
    errors = "\n".join(e.user_message for e in instance.all_logs(outcome.run_id) if e.level >= 40)
    assert "training.model 'xgboost' is not one of lightgbm, logistic_regression" in errors
    assert blobs("keel/model") == []


# --- the whole training flow on the gcp deployment -----------------------------------------------


def test_the_training_flow_materializes_on_the_gcp_deployment(vertex, project, instance, tmp_path, monkeypatch):
    """training_set -> candidate (a Vertex AI custom job) -> gate -> registry, with every artifact on GCS."""
    scratch = tmp_path / "tmp"  # this process's temporary files, to see that no downloaded copy stays behind
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    resources = deployments.resources_for(root=project, environ=gcp_settings(vertex))
    assert resources["storage"].root == f"gs://{BUCKET}/keel" and isinstance(resources["compute"], VertexCompute)
    result = train(project, instance, from_raw_data=True, **resources)
    assert result.success, [job.stderr for job in vertex.jobs.values()]

    (request,) = vertex.requests
    assert container_env(request)["KEEL_PIPES_TRANSPORT"] == "gcs"
    event = instance.get_latest_materialization_event(candidate_model.key)
    candidate = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert candidate["artifact"] == f"gs://{BUCKET}/keel/models/candidates/{result.run_id}"
    logs = run_log(instance, result.run_id)
    assert f"Vertex AI custom job {request['displayName']} succeeded" in logs
    assert "lightgbm: holdout ROC AUC" in logs  # the entry point's log line, back through GCS
    assert 0.83 < candidate["roc_auc"] < 0.87
    assert candidate["plots"].count("data:image/png;base64,") == 4  # read back from the GCS artifact
    run = result.run_id  # each run's training files under its own id (resources/layout.py)
    assert {f"features/{run}/features.parquet", f"features/{run}/feature_state.json"} <= {
        name.removeprefix("keel/") for name in blobs("keel/features/")
    }
    assert f"keel/training_sets/{run}/holdout_rows.parquet" in blobs("keel/training_sets/")
    registry = resources["registry"]
    assert registry.versions(MODEL) == [1] and registry.alias_version(MODEL, "champion") == 1
    assert registry.version_info(MODEL, 1)["tags"]["manifest_sha256"] == candidate["manifest_sha256"]
    registered = instance.get_latest_materialization_event(registered_model.key).asset_materialization
    assert registered.metadata["moved_to"].value == "v1"
    assert not list(scratch.glob("keel-artifact-*")), "a downloaded model copy was left in the temp folder"


def test_a_failed_job_fails_the_run_with_its_error_and_registers_nothing(vertex, project, instance, monkeypatch):
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    reason = "Resources are insufficient in region: europe-west4. Please try a different region."
    vertex.fail_next = reason
    resources = deployments.resources_for(root=project, environ=gcp_settings(vertex))
    result = train(project, instance, from_raw_data=True, **resources)
    assert not result.success
    error = result.failure_data_for_node("candidate_model").error.to_string()
    assert f"ended JOB_STATE_FAILED: {reason}" in error
    assert resources["registry"].versions(MODEL) == []
    assert instance.get_latest_materialization_event(candidate_model.key) is None
    assert instance.get_latest_materialization_event(registered_model.key) is None
    assert blobs("keel/models/candidates/") == [f"keel/models/candidates/{result.run_id}.config.json"]


# --- interruption, refusals, API errors ----------------------------------------------------------


@pytest.mark.parametrize("interruption", [dg.DagsterExecutionInterruptedError, KeyboardInterrupt])
def test_an_interrupted_run_cancels_the_custom_job(vertex, monkeypatch, interruption):
    vertex.hold = True  # the job runs until cancelled

    def interrupted(seconds: float) -> None:
        raise interruption()

    monkeypatch.setattr(cloud_job, "_wait", interrupted)
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    compute = deployments.resources_for(environ=gcp_settings(vertex))["compute"]

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        compute.run(context, "ml.train", {"config": f"gs://{BUCKET}/keel/in.json"}, {"out": f"gs://{BUCKET}/keel/out"})

    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(interruption):
        dg.materialize([trained], resources={"compute": compute}, instance=instance)
    (name,) = vertex.jobs
    assert vertex.calls[-1] == f"POST /v1/{name}:cancel"
    assert vertex.jobs[name].state == "JOB_STATE_CANCELLED"
    assert f"run interrupted: cancelling Vertex AI custom job {name}" in run_log(
        instance, instance.get_runs()[0].run_id
    )


def test_a_refused_create_call_fails_with_googles_reason(vertex, monkeypatch):
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    vertex.denied_projects.add("keel-test")
    compute = deployments.resources_for(environ=gcp_settings(vertex))["compute"]

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        compute.run(context, "ml.train", {}, {"out": f"gs://{BUCKET}/keel/out"})

    outcome = dg.materialize([trained], resources={"compute": compute}, raise_on_error=False)
    message = outcome.failure_data_for_node("trained").error.to_string()
    assert "cannot create Vertex AI custom job keel-ml-train-" in message
    assert "answered 403 PERMISSION_DENIED: Permission 'aiplatform.customJobs.create' denied" in message
    assert vertex.jobs == {}


def test_unavailable_reads_are_retried_and_the_job_still_decides(vertex, monkeypatch):
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    vertex.unavailable_reads = 2
    vertex.fail_next = "Internal error occurred for the current attempt."
    compute = deployments.resources_for(environ=gcp_settings(vertex))["compute"]

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        compute.run(context, "ml.train", {}, {"out": f"gs://{BUCKET}/keel/out"})

    instance = dg.DagsterInstance.ephemeral()
    outcome = dg.materialize([trained], resources={"compute": compute}, instance=instance, raise_on_error=False)
    assert "ended JOB_STATE_FAILED: Internal error occurred" in outcome.failure_data_for_node("trained").error.message
    warnings = [e.user_message for e in instance.all_logs(outcome.run_id) if e.level == 30]
    assert sum("answered 503 UNAVAILABLE" in w and "retrying" in w for w in warnings) == 2


def test_the_code_location_loads_on_the_gcp_deployment_without_credentials():
    """orchestration.definitions under KEEL_DEPLOYMENT=gcp: the same assets, no cloud call at load."""
    script = (
        "import json; from orchestration.definitions import defs; g = defs.resolve_asset_graph(); "
        "print(json.dumps({'compute': type(defs.resources['compute']).__name__, "
        "'storage': defs.resources['storage'].root, "
        "'assets': sorted(k.to_user_string() for k in g.get_all_asset_keys())}))"
    )
    found = {}
    for name, extra in {"local": {}, "gcp": GCP_REQUIRED}.items():
        env = {**os.environ, "KEEL_DEPLOYMENT": name, **extra, "NO_GCE_CHECK": "true"}
        env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        found[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["gcp"]["compute"] == "VertexCompute" and found["gcp"]["storage"] == GCP_REQUIRED["KEEL_GCS_ROOT"]
    assert found["gcp"]["assets"] == found["local"]["assets"]


def test_local_inputs_are_refused_with_the_input_named(vertex, tmp_path):
    compute = deployments.resources_for(environ=gcp_settings(vertex))["compute"]

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        compute.run(context, "ml.train", {"features": str(tmp_path / "f.parquet")}, {"out": f"gs://{BUCKET}/o"})

    outcome = dg.materialize([trained], resources={"compute": compute}, raise_on_error=False)
    message = outcome.failure_data_for_node("trained").error.to_string()
    assert "input 'features'" in message and "is not a gs:// URI" in message
    assert vertex.requests == []


def test_a_folder_input_and_a_file_output_pass_through_as_arguments():
    """Generic over the entry point: ml.score's model folder and predictions file are plain gs:// arguments."""
    compute = VertexCompute(
        project="p", location="us-central1", image_uri="img", service_account="sa@p.iam.gserviceaccount.com",
        pipes_uri="gs://b/k/pipes", output_uri="gs://b/k/vertex-jobs", timeout_seconds=None,
    )  # fmt: skip
    inputs = {"model": "gs://b/k/models/candidates/r1", "rows": "gs://b/k/rows.parquet"}
    request = compute.custom_job_request("job", "ml.score", inputs, {"predictions": "gs://b/k/p.parquet"}, "RUN-ID")
    container = request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert container["command"] == ["python", "-m", "ml.score"]
    assert container["args"] == [
        "--model", "gs://b/k/models/candidates/r1", "--rows", "gs://b/k/rows.parquet",
        "--predictions", "gs://b/k/p.parquet",
    ]  # fmt: skip
    assert "scheduling" not in request["jobSpec"]  # no timeout: Vertex's own limit
    assert request["labels"] == {"keel-module": "ml-score", "dagster-run-id": "run-id"}
    assert compute.endpoint() == "https://us-central1-aiplatform.googleapis.com"


# --- small rules ---------------------------------------------------------------------------------


def test_display_names_are_unique_and_within_vertex_limits():
    run_id = "0123abcd-4567-89ef-0123-456789abcdef"
    names = {custom_job_display_name("keel", "ml.train", run_id) for _ in range(3)}
    names.add(custom_job_display_name("x" * 300, "ml.train", run_id))
    assert len(names) == 4 and all(len(name) <= 128 and "-0123abcd-" in name for name in names)
    assert custom_job_display_name("keel", "ml.train", run_id, suffix="abc123") == "keel-ml-train-0123abcd-abc123"


def test_the_endpoint_must_be_https_unless_it_is_this_machine():
    assert check_endpoint("https://europe-west4-aiplatform.googleapis.com/") == (
        "https://europe-west4-aiplatform.googleapis.com"
    )
    assert check_endpoint("http://127.0.0.1:8123") == "http://127.0.0.1:8123"
    assert check_endpoint("http://localhost:8123") == "http://localhost:8123"
    for url in ("http://vertex.example.com", "http://10.0.0.5:80", "ftp://x", "europe-west4-aiplatform.googleapis.com"):
        with pytest.raises(ValueError, match="must be https://"):
            check_endpoint(url)


def test_the_environment_limit_is_checked_before_any_request():
    body = {"jobSpec": {"workerPoolSpecs": [{"containerSpec": {"env": [{"name": "A", "value": "1"}]}}]}}
    extended = with_environment(body, {"B": "2"})
    assert extended["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    assert body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"] == [{"name": "A", "value": "1"}]  # untouched
    with pytest.raises(ValueError, match="would get 101 environment variables; Vertex AI allows 100"):
        with_environment(body, {f"V{i}": "x" for i in range(100)})


def test_dagster_gcp_pipes_classes_load_without_the_dataproc_extra():
    """dagster_gcp.pipes needs google-cloud-dataproc to import; its GCS injector and reader do not."""
    assert issubclass(PipesGCSContextInjector, dg.PipesContextInjector)
    assert issubclass(PipesGCSMessageReader, dg.PipesBlobStoreMessageReader)


# --- the container contract (ml/runtime.py) ------------------------------------------------------


def test_on_vertex_gcs_outputs_stay_and_bare_names_go_under_aip_model_dir():
    environ = {"AIP_MODEL_DIR": "gs://b/k/vertex-jobs/job/model/"}
    arguments = {"config": "gs://b/c.json", "out": "gs://b/k/models/r1", "extra": "model", "fused": "/gcs/b/x"}
    assert runtime.resolve(arguments, ["config"], ["out", "fused"], environ) == arguments
    resolved = runtime.resolve({"config": "c.json", "out": "./model"}, ["config"], ["out"], environ)
    assert resolved == {"config": "c.json", "out": "gs://b/k/vertex-jobs/job/model/model"}
    for local in ("/tmp/model", "~/model", "file:///tmp/model"):
        with pytest.raises(ValueError, match=r"output 'out' is .* a Vertex AI job cannot keep .*AIP_MODEL_DIR"):
            runtime.resolve({"out": local}, [], ["out"], environ)
    assert runtime.resolve({"out": "/tmp/model"}, [], ["out"], {}) == {"out": "/tmp/model"}  # not on Vertex


# --- the deployment ------------------------------------------------------------------------------


def test_the_documented_gcp_example_is_a_complete_deployment(tmp_path):
    lines = (REPO / "docs" / "examples" / "cloud" / "gcp.env").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert not any("SECRET" in name or "KEY" in name or "CREDENTIALS" in name for name in settings)
    resources = deployments.resources_for(root=tmp_path, environ=settings)
    compute = resources["compute"]
    assert isinstance(compute, VertexCompute) and resources["storage"].root == settings["KEEL_GCS_ROOT"]
    assert (compute.project, compute.location, compute.machine_type) == (
        settings["KEEL_VERTEX_PROJECT"],
        settings["KEEL_VERTEX_LOCATION"],
        settings["KEEL_VERTEX_MACHINE_TYPE"],
    )
    assert compute.pipes_uri == f"{settings['KEEL_GCS_ROOT']}/pipes"
    assert compute.endpoint() == f"https://{settings['KEEL_VERTEX_LOCATION']}-aiplatform.googleapis.com"
    assert resources.keys() == {"params", "dvc", "registry", "storage", "io_manager", "compute", "endpoint"}


@pytest.mark.parametrize("missing", sorted(GCP_REQUIRED))
def test_an_incomplete_gcp_deployment_names_the_missing_variable(missing):
    settings = {"KEEL_DEPLOYMENT": "gcp", **{k: v for k, v in GCP_REQUIRED.items() if k != missing}}
    with pytest.raises(
        deployments.DeploymentError, match=rf"KEEL_DEPLOYMENT=gcp needs the environment variable {missing}"
    ):
        deployments.resources_for(environ=settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KEEL_GCS_ROOT", "s3://keel/x", "KEEL_GCS_ROOT='s3://keel/x' must be a gs:// URI"),
        (
            "KEEL_VERTEX_REPLICA_COUNT",
            "2",
            "KEEL_VERTEX_REPLICA_COUNT='2' is not valid: only 1 replica: the ml entry points are single-process",
        ),
        (
            "KEEL_VERTEX_TIMEOUT_SECONDS",
            "1h",
            "KEEL_VERTEX_TIMEOUT_SECONDS='1h' is not valid: Input should be a valid integer",
        ),
        (
            "KEEL_VERTEX_POLL_SECONDS",
            "often",
            "KEEL_VERTEX_POLL_SECONDS='often' is not valid: Input should be a valid number",
        ),
    ],
)
def test_a_malformed_gcp_setting_names_the_variable(name, value, message):
    with pytest.raises(deployments.DeploymentError, match=re.escape(message)):
        deployments.resources_for(environ={"KEEL_DEPLOYMENT": "gcp", **GCP_REQUIRED, name: value})


def test_the_project_may_come_from_google_cloud_project():
    settings = {k: v for k, v in GCP_REQUIRED.items() if k != "KEEL_VERTEX_PROJECT"}
    compute = deployments.resources_for(
        environ={"KEEL_DEPLOYMENT": "gcp", **settings, "GOOGLE_CLOUD_PROJECT": "other"}
    )["compute"]
    assert compute.parent == "projects/other/locations/europe-west4"


def test_the_artifact_store_works_on_gcs(gcs):
    """What the assets do with storage, on the emulator through gcsfs (STORAGE_EMULATOR_HOST)."""
    store = ArtifactStore(root=f"gs://{BUCKET}/keel")
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5]})
    uri = store.uri("training_set", "features.parquet")
    io.write_parquet(frame, uri)
    assert uri == f"gs://{BUCKET}/keel/training_set/features.parquet" and io.exists(
        store.uri("training_set", "features.parquet")
    )
    pd.testing.assert_frame_equal(io.read_parquet(store.uri("training_set", "features.parquet")), frame)
    io.write_json({"n": 1}, store.uri("state.json"))
    io.write_json({"n": 2}, store.uri("state.json"))
    assert io.read_json(store.uri("state.json")) == {"n": 2} and not io.exists(store.uri("missing.json"))
    for name in ("manifest.json", "plots/roc.png"):
        io.write_json({"file": name}, store.uri("models", "run1", name))
    io.write_json({"sibling": True}, store.uri("models", "run1.config.json"))
    with store.local_copy(store.uri("models", "run1")) as local:
        assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == [
            "manifest.json",
            "plots/roc.png",
        ]
    assert not local.exists()  # the downloaded copy is gone once the block ends
    assert blobs("keel/") == [
        "keel/models/run1.config.json",
        "keel/models/run1/manifest.json",
        "keel/models/run1/plots/roc.png",
        "keel/state.json",
        "keel/training_set/features.parquet",
    ]


# --- scoring a day on the gcp deployment ---------------------------------------------------------


def test_a_day_is_scored_as_a_vertex_custom_job(vertex, trained_project):
    """nightly_scoring on KEEL_DEPLOYMENT=gcp: the day's file on GCS, `python -m ml.score` as a custom job."""
    resources = deployments.resources_for(root=trained_project, environ=gcp_settings(vertex))
    rows_uri, _ = cloud_day(trained_project, f"gs://{BUCKET}/daily")
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        result = score_day(trained_project, instance, resources)
        assert result.success, [job.stderr for job in vertex.jobs.values()]
        scored = assert_scored_like_local(result, instance, resources, rows_uri)
        logs = run_log(instance, result.run_id)
        drift = latest(instance, "drift_report")

    (request,) = vertex.requests
    assert normalised(request, result.run_id) == fixture("vertex_score_custom_job.json", request, result.run_id)
    display_name = request["displayName"]
    assert display_name.startswith(f"keel-ml-score-{result.run_id[:8]}-")
    (job,) = vertex.jobs.values()
    assert job.state == "JOB_STATE_SUCCEEDED", job.stderr
    # The job read the published model and the day's rows from GCS and wrote the predictions there itself.
    args = request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert (
        args[args.index("--model") + 1]
        == f"gs://{BUCKET}/keel/models/registered/{MODEL}/{scored['model_manifest_sha256']}"
    )
    assert args[args.index("--rows") + 1] == rows_uri
    # One job on 3 machines: the primary replica and a second pool of 2, the same container and environment.
    pools = request["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == [1, SHARDS - 1]
    assert pools[0]["containerSpec"] == pools[1]["containerSpec"]
    attempt = f"keel/predictions/day={DAY}/run-{result.run_id}"
    parts = [
        f"{attempt}/part-0000{i}-of-00003{suffix}"
        for i in range(SHARDS)
        for suffix in (".capture.parquet", ".json", ".parquet")
    ]
    assert blobs("keel/predictions/") == sorted(
        [
            f"keel/predictions/{DAY}.config.json",
            f"keel/predictions/day={DAY}/manifest.json",
            f"{attempt}/capture.parquet",
            *parts,
        ]
    )
    assert blobs(f"keel/vertex-jobs/{display_name}/") == []  # nothing was left under AIP_MODEL_DIR
    # Pipes messages came back through GCS; the context was cleaned up.
    messages = decode_pipes_param(container_env(request)["DAGSTER_PIPES_MESSAGES"])
    pipes_files = blobs(f"keel/pipes/{display_name}/")
    assert f"{messages['key_prefix']}/1.json" in pipes_files and not [n for n in pipes_files if "/context-" in n]
    assert (
        f"scoring {rows_uri} with the model at gs://{BUCKET}/keel/models/registered/{MODEL}/{scored['model_manifest_sha256']}"
        in logs
    )
    assert f"shard 0 of 3 into gs://{BUCKET}/{attempt}" in logs  # only replica 0 speaks Pipes
    assert "shard 1 of 3" not in logs and "shard 2 of 3" not in logs
    assert f"Vertex AI custom job {display_name} succeeded" in logs
    assert drift["verdict"] == "no drift" and drift["report"] == f"gs://{BUCKET}/keel/monitoring/drift/{DAY}.html"
    drift_html, script, importance = blobs(
        "keel/monitoring/"
    )  # the day's report, and the model's importance kept once per version
    assert drift_html == f"keel/monitoring/drift/{DAY}.html"
    assert re.fullmatch(
        r"keel/monitoring/drift/evidently-[\w.]+\.js", script
    )  # Evidently's script, shared by the pages
    assert re.fullmatch(r"keel/monitoring/importance/telco_churn/[0-9a-f]{64}\.json", importance)


def test_a_failing_replica_fails_the_day_and_the_previous_day_stays(vertex, trained_project):
    """Scoring the day again with one replica failing: the job fails, and the day's manifest and parts stay."""
    resources = deployments.resources_for(root=trained_project, environ=gcp_settings(vertex))
    rows_uri, _ = cloud_day(trained_project, f"gs://{BUCKET}/daily")
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        assert score_day(trained_project, instance, resources).success
        manifest = f"gs://{BUCKET}/keel/predictions/day={DAY}/manifest.json"
        before, scores = io.read_json(manifest), read_predictions(f"gs://{BUCKET}/keel/predictions/day={DAY}")
        vertex.fail_replica = ("workerpool1", 0)  # shard 1
        failed = score_day(trained_project, instance, resources)
        assert not failed.success
        failure = failed.failure_data_for_node("batch_predictions").error.to_string()
        assert "The replica workerpool1-0 exited with a non-zero status" in failure
        assert io.read_json(manifest) == before
        pd.testing.assert_frame_equal(read_predictions(f"gs://{BUCKET}/keel/predictions/day={DAY}"), scores)
