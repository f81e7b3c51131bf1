"""Resources per deployment, chosen by one environment variable (KEEL_DEPLOYMENT, `local` by default).

A deployment is one function `(root, environ) -> resource dict` in `DEPLOYMENTS`: it picks compute
AND storage together, so an asset never learns where it runs. The DVC and MLflow resources are the
same everywhere (MLFLOW_TRACKING_URI, when set, points MLflow elsewhere). A cloud deployment reads
its settings (bucket, role, image, region, ...) from environment variables; `setting()` fails with
the name of the variable that is missing or malformed. Secrets are never read here: the cloud
clients take credentials from the environment or the machine's identity.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from resources.azureml import PUBLIC_RESOURCE_MANAGER, AzureMLCompute
from resources.compute import LocalCompute
from resources.dvc import DvcResource
from resources.params import ParamsResource
from resources.records import RecordIOManager
from resources.registry import ModelRegistry
from resources.sagemaker import SageMakerCompute
from resources.storage import ArtifactStore
from resources.vertex import VertexCompute

DEPLOYMENT_VARIABLE = "KEEL_DEPLOYMENT"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

Deployment = Callable[..., dict[str, Any]]


class DeploymentError(ValueError):
    """A deployment cannot be built from the environment; the message names the variable."""


def setting(
    environ: Mapping[str, str],
    deployment: str,
    name: str,
    default: str | None = None,
    *,
    description: str = "",
) -> str:
    """The value of environment variable `name`, or `default`; missing and no default is an error."""
    value = environ.get(name, "").strip()
    if value:
        return value
    if default is not None:
        return default
    what = f" ({description})" if description else ""
    raise DeploymentError(f"{DEPLOYMENT_VARIABLE}={deployment} needs the environment variable {name}{what}")


def either_setting(environ: Mapping[str, str], deployment: str, name: str, fallback: str) -> str:
    """Environment variable `name`, else the platform's own `fallback` variable; neither is an error."""
    value = environ.get(name, "").strip() or environ.get(fallback, "").strip()
    if not value:
        raise DeploymentError(
            f"{DEPLOYMENT_VARIABLE}={deployment} needs the environment variable {name} (or {fallback})"
        )
    return value


def int_setting(environ: Mapping[str, str], deployment: str, name: str, default: int) -> int:
    raw = setting(environ, deployment, name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise DeploymentError(f"{name}={raw!r} is not a whole number ({DEPLOYMENT_VARIABLE}={deployment})") from None


def bool_setting(environ: Mapping[str, str], deployment: str, name: str, default: bool) -> bool:
    raw = setting(environ, deployment, name, "true" if default else "false").lower()
    if raw not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise DeploymentError(f"{name}={raw!r} is not true or false ({DEPLOYMENT_VARIABLE}={deployment})")
    return raw in {"1", "true", "yes", "on"}


def uri_setting(environ: Mapping[str, str], deployment: str, name: str, scheme: str, description: str = "") -> str:
    value = setting(environ, deployment, name, description=description).rstrip("/")
    if not value.startswith(f"{scheme}://") or len(value) <= len(f"{scheme}://"):
        raise DeploymentError(f"{name}={value!r} must be a {scheme}:// URI ({DEPLOYMENT_VARIABLE}={deployment})")
    return value


def shared(root: Path, storage: ArtifactStore) -> dict[str, Any]:
    """What every deployment has: the settings, the DVC repository, the MLflow registry, and the
    deployment's artifact store with the IO manager that keeps the assets' records in it."""
    params = ParamsResource(project_dir=str(root))
    return {
        "params": params,
        "dvc": DvcResource(repo_dir=str(root)),
        "registry": ModelRegistry(root=str(root / "var" / "mlflow"), params=params),
        "storage": storage,
        "io_manager": RecordIOManager(storage=storage),
    }


# Where `make ui` serves the local store's HTML reports (orchestration/ui.py); links in metadata point here.
REPORTS_URL_VARIABLE = "KEEL_REPORTS_URL"
DEFAULT_REPORTS_URL = "http://127.0.0.1:3001"


def reports_url(environ: Mapping[str, str], deployment: str) -> str:
    value = setting(environ, deployment, REPORTS_URL_VARIABLE, DEFAULT_REPORTS_URL).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise DeploymentError(
            f"{REPORTS_URL_VARIABLE}={value!r} must be an http:// or https:// URL ({DEPLOYMENT_VARIABLE}={deployment})"
        )
    return value


def local(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything on this machine: the DVC repo, artifacts under var/storage, MLflow under var/mlflow.

    MLFLOW_TRACKING_URI, when set, points tracking and the registry at another MLflow instead.
    KEEL_REPORTS_URL is where a browser reads the stored HTML reports (`make ui` serves them there).
    """
    environ = os.environ if environ is None else environ
    storage = ArtifactStore(root=str(root / "var" / "storage"), web_url=reports_url(environ, "local"))
    return {**shared(root, storage), "compute": LocalCompute(working_dir=str(root))}


def aws(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """SageMaker training jobs, artifacts under KEEL_S3_ROOT (docs/cloud.md lists every variable)."""
    environ = os.environ if environ is None else environ
    s3_root = uri_setting(environ, "aws", "KEEL_S3_ROOT", "s3", "s3://bucket/prefix for artifacts and jobs")
    region = either_setting(environ, "aws", "AWS_REGION", "AWS_DEFAULT_REGION")
    runtime = int_setting(environ, "aws", "KEEL_SAGEMAKER_MAX_RUNTIME_SECONDS", 3600)
    compute = SageMakerCompute(
        region=region,
        role_arn=setting(environ, "aws", "KEEL_SAGEMAKER_ROLE_ARN", description="execution role of the training jobs"),
        image_uri=setting(environ, "aws", "KEEL_SAGEMAKER_IMAGE_URI", description="ECR URI of the project's image"),
        pipes_uri=f"{s3_root}/pipes",  # Pipes context and messages, one folder per job
        output_uri=f"{s3_root}/sagemaker-jobs",  # each job's model.tar.gz, before it is unpacked
        instance_type=setting(environ, "aws", "KEEL_SAGEMAKER_INSTANCE_TYPE", "ml.m5.large"),
        instance_count=int_setting(environ, "aws", "KEEL_SAGEMAKER_INSTANCE_COUNT", 1),
        volume_size_gb=int_setting(environ, "aws", "KEEL_SAGEMAKER_VOLUME_GB", 30),
        spot=bool_setting(environ, "aws", "KEEL_SAGEMAKER_SPOT", False),
        max_runtime_seconds=runtime,
        max_wait_seconds=int_setting(environ, "aws", "KEEL_SAGEMAKER_MAX_WAIT_SECONDS", 0) or None,
        poll_interval_seconds=float(int_setting(environ, "aws", "KEEL_SAGEMAKER_POLL_SECONDS", 30)),
        endpoint_url=environ.get("KEEL_SAGEMAKER_ENDPOINT_URL", "").strip() or None,
    )
    return {**shared(root, ArtifactStore(root=s3_root)), "compute": compute}


def gcp(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Vertex AI custom jobs, artifacts under KEEL_GCS_ROOT (docs/cloud.md lists every variable).

    Credentials are Application Default Credentials for the Vertex API and Cloud Storage alike;
    STORAGE_EMULATOR_HOST, when set, points Cloud Storage at an emulator.
    """
    environ = os.environ if environ is None else environ
    gcs_root = uri_setting(environ, "gcp", "KEEL_GCS_ROOT", "gs", "gs://bucket/prefix for artifacts and jobs")
    project = either_setting(environ, "gcp", "KEEL_VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT")
    location = setting(environ, "gcp", "KEEL_VERTEX_LOCATION", description="Vertex AI region, e.g. europe-west4")
    replicas = int_setting(environ, "gcp", "KEEL_VERTEX_REPLICA_COUNT", 1)
    if replicas != 1:
        raise DeploymentError(
            f"KEEL_VERTEX_REPLICA_COUNT={replicas}: the ml entry points are single-process, and every replica "
            f"would run the same command and race on its outputs; only 1 is supported ({DEPLOYMENT_VARIABLE}=gcp)"
        )
    compute = VertexCompute(
        project=project,
        location=location,
        image_uri=setting(environ, "gcp", "KEEL_VERTEX_IMAGE_URI", description="Artifact Registry URI of the image"),
        service_account=setting(
            environ, "gcp", "KEEL_VERTEX_SERVICE_ACCOUNT", description="email of the service account jobs run as"
        ),
        pipes_uri=f"{gcs_root}/pipes",  # Pipes context and messages, one folder per job
        output_uri=f"{gcs_root}/vertex-jobs",  # each job's baseOutputDirectory (AIP_MODEL_DIR, ...)
        machine_type=setting(environ, "gcp", "KEEL_VERTEX_MACHINE_TYPE", "n1-standard-4"),
        replica_count=replicas,
        timeout_seconds=int_setting(environ, "gcp", "KEEL_VERTEX_TIMEOUT_SECONDS", 3600),
        poll_interval_seconds=float_setting(environ, "gcp", "KEEL_VERTEX_POLL_SECONDS", 30.0),
        message_interval_seconds=float_setting(environ, "gcp", "KEEL_PIPES_MESSAGE_INTERVAL", 5.0),
        api_endpoint=setting(
            environ, "gcp", "KEEL_VERTEX_API_ENDPOINT", f"https://{location}-aiplatform.googleapis.com"
        ),
    )
    return {**shared(root, ArtifactStore(root=gcs_root)), "compute": compute}


def azure(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Azure ML command jobs, artifacts under KEEL_AZURE_STORAGE_ROOT (docs/cloud.md lists every variable).

    Storage access comes from the environment as adlfs and azure-storage-blob read it: the account
    in AZURE_STORAGE_ACCOUNT_NAME with Entra ID (DefaultAzureCredential), or, for Azurite and
    development, AZURE_STORAGE_CONNECTION_STRING (passed to the resource as a dg.EnvVar, never a value).
    """
    environ = os.environ if environ is None else environ
    root_uri = uri_setting(environ, "azure", "KEEL_AZURE_STORAGE_ROOT", "az", "az://container/prefix for artifacts")
    workspace = {
        "subscription_id": setting(environ, "azure", "KEEL_AZUREML_SUBSCRIPTION_ID"),
        "resource_group": setting(environ, "azure", "KEEL_AZUREML_RESOURCE_GROUP"),
        "workspace": setting(environ, "azure", "KEEL_AZUREML_WORKSPACE"),
        "compute": setting(environ, "azure", "KEEL_AZUREML_COMPUTE", description="compute cluster name"),
        "datastore": setting(
            environ, "azure", "KEEL_AZUREML_DATASTORE", description="datastore on the storage root's container"
        ),
    }
    image, environment = (
        environ.get(name, "").strip() or None for name in ("KEEL_AZUREML_IMAGE", "KEEL_AZUREML_ENVIRONMENT")
    )
    if bool(image) == bool(environment):
        raise DeploymentError(
            f"{DEPLOYMENT_VARIABLE}=azure needs KEEL_AZUREML_IMAGE or KEEL_AZUREML_ENVIRONMENT (exactly one)"
        )
    account = environ.get("AZURE_STORAGE_ACCOUNT_NAME", "").strip()
    account_url = environ.get("KEEL_AZURE_STORAGE_ACCOUNT_URL", "").strip() or (
        f"https://{account}.blob.core.windows.net" if account else ""
    )
    if not account_url:
        raise DeploymentError(
            f"{DEPLOYMENT_VARIABLE}=azure needs KEEL_AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_ACCOUNT_NAME"
        )
    connection = "AZURE_STORAGE_CONNECTION_STRING"
    compute = AzureMLCompute(
        **workspace,
        image=image,
        environment=environment,
        container=root_uri.removeprefix("az://").split("/", 1)[0],
        storage_account_url=account_url,
        storage_connection_string=dg.EnvVar(connection) if environ.get(connection, "").strip() else None,
        identity_client_id=environ.get("KEEL_AZUREML_IDENTITY_CLIENT_ID", "").strip() or None,
        experiment=setting(environ, "azure", "KEEL_AZUREML_EXPERIMENT", "keel"),
        resource_manager_url=setting(environ, "azure", "KEEL_AZUREML_RESOURCE_MANAGER_URL", PUBLIC_RESOURCE_MANAGER),
        poll_interval_seconds=float_setting(environ, "azure", "KEEL_AZUREML_POLL_SECONDS", 15.0),
        message_interval_seconds=float_setting(environ, "azure", "KEEL_PIPES_MESSAGE_INTERVAL", 10.0),
    )
    return {**shared(root, ArtifactStore(root=root_uri)), "compute": compute}


def float_setting(environ: Mapping[str, str], deployment: str, name: str, default: float) -> float:
    raw = setting(environ, deployment, name, f"{default:g}")
    try:
        return float(raw)
    except ValueError:
        raise DeploymentError(f"{name}={raw!r} is not a number ({DEPLOYMENT_VARIABLE}={deployment})") from None


# KEEL_DEPLOYMENT value -> function building its resources. One entry per deployment.
DEPLOYMENTS: dict[str, Deployment] = {"local": local, "aws": aws, "gcp": gcp, "azure": azure}


def deployment_name(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(DEPLOYMENT_VARIABLE, "local").strip() or "local"


def resources_for(
    name: str | None = None, root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    name = name or deployment_name(environ)
    if name not in DEPLOYMENTS:
        raise DeploymentError(
            f"{DEPLOYMENT_VARIABLE}={name!r} is not a known deployment; known deployments: {', '.join(sorted(DEPLOYMENTS))}"
        )
    return DEPLOYMENTS[name](root, environ)
