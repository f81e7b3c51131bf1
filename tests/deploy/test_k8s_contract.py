"""The Kubernetes Job a `nightly_scoring` run gets from deploy/dagster/values.yaml.

No cluster runs here, so the test goes as far as one can without one: the instance is configured with
the run launcher, coordinator, monitoring, retries and concurrency the chart renders from the values
(tests/deploy/chart.py), the code location `orchestration.definitions` is loaded with the image and
container context the chart gives its code server, and dagster-k8s's own K8sRunLauncher launches a
run of `nightly_scoring`. The launcher sends its Job to a Kubernetes API that is a recorder on
127.0.0.1 (a kubeconfig points the official client at it), and the recorded Job is validated offline
against the schema of a pinned Kubernetes version (kubernetes-validate, strict: no unknown fields).

It proves what the Job says: image, command, environment, secrets by reference, resources, labels.
It does not prove that a cluster admits and runs it (RBAC, image pull, scheduling, the network).
"""

import json
import re
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from dagster._core.launcher import LaunchRunContext
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_run_for_test, instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value

from tests.conftest import REPO
from tests.deploy import chart

# The Kubernetes version the Job is validated against: one the managed clusters (EKS, GKE, AKS) run.
KUBERNETES_VERSION = "1.34.0"

# What the daemon's environment holds in the cluster; none of it may reach the Job as a literal.
SECRETS_IN_THE_ENVIRONMENT = {
    "MLFLOW_TRACKING_USERNAME": "keel-runner-sentinel-user",
    "MLFLOW_TRACKING_PASSWORD": "sentinel-password-b7f3e1",
    "DAGSTER_PG_PASSWORD": "sentinel-pg-password-41aa",
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret-9c2d",
}


class KubernetesApiRecorder(BaseHTTPRequestHandler):
    """Answers `create_namespaced_job` as the API server does (201 with the object) and keeps the body."""

    jobs: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        match = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", self.path.split("?")[0])
        if not match:
            self.send_error(404, f"no such API path in this recorder: {self.path}")
            return
        type(self).jobs.append((match.group(1), body))
        payload = json.dumps(body).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def kubernetes_api(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig pointing the official client at the recorder on a free loopback port."""
    KubernetesApiRecorder.jobs = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), KubernetesApiRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "recorder", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "recorder", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "recorder", "context": {"cluster": "recorder", "user": "recorder"}}],
                "current-context": "recorder",
            }
        )
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def values() -> dict:
    return chart.load_values()


@pytest.fixture
def nightly_scoring_job(values: dict, kubernetes_api: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Launch a nightly_scoring run with the chart's K8sRunLauncher; return the Job it sent to Kubernetes."""
    # Secrets the daemon's environment may hold in the cluster.
    for name, secret in SECRETS_IN_THE_ENVIRONMENT.items():
        monkeypatch.setenv(name, secret)

    # In the cluster the launcher loads the in-cluster config; here the same launcher reads the kubeconfig.
    launcher_config = {
        **chart.run_launcher_config(values),
        "load_incluster_config": False,
        "kubeconfig_file": str(kubernetes_api),
    }
    overrides = {
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher_config},
        "run_coordinator": chart.run_coordinator(values),
        "run_monitoring": chart.run_monitoring(values),
        "run_retries": chart.run_retries(values),
        "concurrency": chart.concurrency(values),
    }
    deployment = chart.user_deployment(values)
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name="orchestration.definitions", working_directory=str(REPO)
        ),
        container_image=chart.image_name(deployment["image"]),
        container_context=chart.container_context(values, deployment),
        location_name=deployment["name"],
    )
    instance_dir = tmp_path / "instance"
    instance_dir.mkdir()
    with (
        instance_for_test(overrides=overrides, temp_dir=str(instance_dir), set_dagster_home=False) as instance,
        origin.create_location(instance) as location,
    ):
        (repository,) = location.get_repositories().values()
        remote_job = repository.get_full_job("nightly_scoring")
        run = create_run_for_test(
            instance,
            job_name="nightly_scoring",
            tags={**remote_job.tags, "dagster/partition": "2026-11-30"},
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
        )
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    (namespace, job), *others = KubernetesApiRecorder.jobs
    assert not others, "one run, one Job"
    return {"namespace": namespace, "job": job, "run_id": run.run_id}


def container(job: dict) -> dict:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


def test_the_job_is_valid_for_the_pinned_kubernetes_version(nightly_scoring_job):
    job = nightly_scoring_job["job"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)  # raises on any schema error


def test_an_invalid_job_is_refused_by_the_same_validation(nightly_scoring_job):
    """The validation can fail: a misspelt field and a wrong type are both refused."""
    job = json.loads(json.dumps(nightly_scoring_job["job"]))
    container(job)["imagePullPolicy"] = "Sometimes"
    container(job)["resourcez"] = container(job).pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_the_job_runs_the_run_worker_from_the_project_image(values, nightly_scoring_job):
    job, run_id = nightly_scoring_job["job"], nightly_scoring_job["run_id"]
    deployment = chart.user_deployment(values)
    worker = container(job)
    assert worker["image"] == chart.image_name(deployment["image"])
    assert worker["imagePullPolicy"] == deployment["image"]["pullPolicy"]
    assert worker["args"][:3] == ["dagster", "api", "execute_run"]
    args = deserialize_value(worker["args"][3], ExecuteRunArgs)
    assert args.run_id == run_id
    assert args.job_origin.job_name == "nightly_scoring"
    # The run worker loads the same module, from the image's working directory, as the code server.
    assert args.job_origin.repository_origin.code_pointer.module == "orchestration.definitions"
    assert nightly_scoring_job["namespace"] == chart.NAMESPACE
    labels = job["metadata"]["labels"]
    assert labels["dagster/job"] == "nightly_scoring"
    assert labels["dagster/code-location"] == "keel"
    assert labels["dagster/run-id"] == run_id
    # Retries are Dagster's: the Job itself never starts a second pod; Kubernetes ends a run past its time.
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 21600


def test_the_job_gets_the_projects_settings_and_secrets_by_reference(values, nightly_scoring_job):
    worker = container(nightly_scoring_job["job"])
    env = {item["name"]: item for item in worker["env"]}
    assert env["KEEL_DEPLOYMENT"]["value"] == "aws"
    assert env["KEEL_INSTANCE"]["value"] == "team"  # no alias moves without an authenticated MLflow user
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://keel-mlflow.keel.svc.cluster.local:5000"
    assert env["DAGSTER_RUN_JOB_NAME"]["value"] == "nightly_scoring"
    # The instance the run reports to: the chart's ConfigMap mounted at DAGSTER_HOME, as the image sets it.
    dockerfile = (REPO / "deploy" / "dagster" / "Dockerfile").read_text()
    assert env["DAGSTER_HOME"]["value"] == chart.DAGSTER_HOME
    assert f"DAGSTER_HOME={chart.DAGSTER_HOME}" in dockerfile
    # The instance's Postgres password: a reference to the Secret the values name.
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "keel-dagster-postgresql", "key": "postgresql-password"}
    }
    sources = {(kind, ref["name"]) for item in worker["envFrom"] for kind, ref in item.items()}
    assert ("secretRef", "keel-mlflow-credentials") in sources
    assert ("configMapRef", "keel-deployment") in sources
    # The chart's ConfigMap for this deployment, and the service account it makes for its pods.
    assert ("configMapRef", "dagster-dagster-user-deployments-keel-user-env") in sources
    pod_spec = nightly_scoring_job["job"]["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "dagster-dagster-user-deployments-user-deployments"


def test_no_secret_is_written_into_the_job(nightly_scoring_job):
    job = nightly_scoring_job["job"]
    text = json.dumps(job)
    for name, secret in SECRETS_IN_THE_ENVIRONMENT.items():
        assert secret not in text, f"the value of {name} from the launching process is in the Job"
    secretive = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY$", re.IGNORECASE)
    for item in container(job)["env"]:
        if secretive.search(item["name"]):
            assert "value" not in item and "secretKeyRef" in item.get("valueFrom", {}), item


def test_the_run_worker_has_resources(values, nightly_scoring_job):
    resources = container(nightly_scoring_job["job"])["resources"]
    # The run worker's share from the launcher: a code location's own resources would replace it.
    assert "resources" not in chart.user_deployment(values)
    assert resources == values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


# The values repeat what the project says elsewhere; these keep them from drifting apart silently.


def code_server_args(deployment: dict) -> dict[str, str]:
    args = deployment["codeServerArgs"]
    return dict(zip(args[::2], args[1::2], strict=True))


def test_the_code_location_is_the_one_workspace_yaml_names(values):
    (location,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    module = location["python_module"]
    deployment = chart.user_deployment(values, module["location_name"])  # the chart names the location after it
    args = code_server_args(deployment)
    assert args["--module-name"] == module["module_name"]
    assert args["--location-name"] == module["location_name"]
    # The image's working directory (its base's) is the project root, where workspace.yaml's `.` points.
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^WORKDIR (\S+)$", dockerfile, flags=re.MULTILINE).group(1) == args["--working-directory"]


def effective_settings(sections: dict) -> dict:
    """What a real Dagster instance configured with these sections enforces (defaults filled in)."""
    with (
        tempfile.TemporaryDirectory() as temp_dir,
        instance_for_test(overrides=sections, temp_dir=temp_dir, set_dagster_home=False) as instance,
    ):
        pools = instance.get_concurrency_config().pool_config
        return {
            "run_coordinator": type(instance.run_coordinator).__name__,
            "run_monitoring": instance.run_monitoring_enabled,
            "start_timeout_seconds": instance.run_monitoring_start_timeout_seconds,
            "cancel_timeout_seconds": instance.run_monitoring_cancel_timeout_seconds,
            "poll_interval_seconds": instance.run_monitoring_poll_interval_seconds,
            "free_slots_after_run_end_seconds": instance.run_monitoring_settings.get(
                "free_slots_after_run_end_seconds"
            ),
            "max_resume_run_attempts": instance.run_monitoring_max_resume_run_attempts,
            "run_retries": instance.run_retries_enabled,
            "max_retries": instance.run_retries_max_retries,
            "retry_on_asset_or_op_failure": instance.run_retries_retry_on_asset_or_op_failure,
            "default_pool_limit": pools.default_pool_limit,
            "pool_granularity": pools.pool_granularity,
        }


def cluster_sections(values: dict) -> dict:
    return {
        "run_coordinator": chart.run_coordinator(values),
        "run_monitoring": chart.run_monitoring(values),
        "run_retries": chart.run_retries(values),
        "concurrency": chart.concurrency(values),
    }


@pytest.fixture(scope="module")
def laptop() -> dict:
    return yaml.safe_load((REPO / "orchestration" / "dagster.yaml").read_text())


def test_the_cluster_enforces_what_orchestration_dagster_yaml_does(values, laptop):
    """Run monitoring, retries and pools as on a laptop, read back from real Dagster instances."""
    local = {name: laptop[name] for name in ("run_monitoring", "run_retries", "concurrency")}
    # `dagster dev` queues runs too (its daemon dequeues them); the team profile names the coordinator.
    local["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    assert effective_settings(cluster_sections(values)) == effective_settings(local)
    # The run time limit: the Job's deadline on Kubernetes, the run monitor's on a laptop.
    job_spec = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["jobSpecConfig"]
    assert job_spec["activeDeadlineSeconds"] == laptop["run_monitoring"]["max_runtime_seconds"]


def test_a_drifted_setting_would_be_caught(values, laptop):
    local = {name: laptop[name] for name in ("run_monitoring", "run_retries", "concurrency")}
    for section, key, value in [
        ("concurrency", "pools", {"defaultLimit": 2, "granularity": "op"}),
        ("dagsterDaemon", "runRetries", {"enabled": True, "maxRetries": 3}),
    ]:
        drifted = json.loads(json.dumps(values))
        drifted[section][key] = value
        assert effective_settings(cluster_sections(drifted)) != effective_settings(local)


def test_the_values_hold_no_secret(values):
    """Every credential is a Secret's name; the one password field the chart has stays empty."""
    secretive = re.compile(r"password|secret|token|credential|_key$", re.IGNORECASE)
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if {"name", "value"} <= node.keys() and secretive.search(str(node["name"])):
                found.append(f"{path}: {node['name']} has a literal value")
            for key, value in node.items():
                if isinstance(value, str) and value and secretive.search(key) and not key.endswith("SecretName"):
                    found.append(f"{path}.{key} = {value!r}")
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}[{index}]")

    walk(values, "values")
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert not values["generatePostgresqlPasswordSecret"]  # the chart would write the password into a Secret it makes
    assert found == []
    leaky = json.loads(json.dumps(values))
    leaky["dagster-user-deployments"]["deployments"][0]["env"].append(
        {"name": "MLFLOW_TRACKING_PASSWORD", "value": "x"}
    )
    found.clear()
    walk(leaky, "values")
    assert found, "the check must catch a password written into the values"
