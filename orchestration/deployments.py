"""Resources per deployment, chosen by one environment variable (KEEL_DEPLOYMENT, `local` by default).

A deployment is one function `(root, environ) -> resource dict` in `DEPLOYMENTS`: it picks compute
AND storage together, so an asset never learns where it runs. The settings (params.yaml), DVC and
MLflow resources are the same everywhere (MLFLOW_TRACKING_URI, when set, points MLflow elsewhere).

A cloud deployment reads its compute settings through a table, resource field -> environment
variable (or variables: the first one set wins, e.g. AWS_REGION, else AWS_DEFAULT_REGION). The
resource's own pydantic fields parse and check the strings ("2" -> 2, "yes" -> True, `ge=1`); a
variable left unset keeps the field's default. A missing required variable or a value the field
refuses fails at load with the variable's name. Secrets are never read here: the cloud clients take
credentials from the environment or the machine's identity, and the Azure connection string goes to
the resource as a `dg.EnvVar`, by name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import ValidationError

from resources.azureml import AzureMLCompute
from resources.compute import LocalCompute
from resources.dvc import DvcResource
from resources.params import ParamsResource
from resources.records import RecordIOManager
from resources.registry import ModelRegistry
from resources.sagemaker import SageMakerCompute
from resources.storage import ArtifactStore
from resources.vertex import VertexCompute
from serving.cloud import LocalEndpoint
from serving.cloud.azureml_endpoint import AzureMLEndpoint
from serving.cloud.sagemaker_endpoint import SageMakerEndpoint
from serving.cloud.vertex_endpoint import VertexEndpoint

DEPLOYMENT_VARIABLE = "KEEL_DEPLOYMENT"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

Deployment = Callable[..., dict[str, Any]]
Resource = TypeVar("Resource", bound=dg.ConfigurableResource)
# Resource field -> the environment variable that sets it, or several: the first one set wins.
Settings = Mapping[str, str | tuple[str, ...]]


class DeploymentError(ValueError):
    """A deployment cannot be built from the environment; the message names the variable."""


def setting(environ: Mapping[str, str], name: str) -> str | None:
    """Environment variable `name`, stripped; unset and empty are both None."""
    return environ.get(name, "").strip() or None


def needs(deployment: str, names: str, what: str = "") -> DeploymentError:
    what = f" ({what})" if what else ""
    return DeploymentError(f"{DEPLOYMENT_VARIABLE}={deployment} needs the environment variable {names}{what}")


def storage_root(environ: Mapping[str, str], deployment: str, name: str, scheme: str, what: str) -> str:
    """The deployment's artifact root from variable `name`: required, and a `scheme`:// URI."""
    value = setting(environ, name)
    if value is None:
        raise needs(deployment, name, what)
    value = value.rstrip("/")
    if not value.startswith(f"{scheme}://") or len(value) <= len(f"{scheme}://"):
        raise DeploymentError(f"{name}={value!r} must be a {scheme}:// URI ({DEPLOYMENT_VARIABLE}={deployment})")
    return value


def read_settings(
    resource: type[dg.ConfigurableResource], deployment: str, settings: Settings, environ: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """field -> (variable, value) for each field of `settings` that is set; a required one unset is an error."""
    found = {}
    for field, names in settings.items():
        names = (names,) if isinstance(names, str) else names
        first = next(((name, raw) for name in names if (raw := setting(environ, name))), None)
        if first:
            found[field] = first
        elif resource.model_fields[field].is_required():
            raise needs(deployment, " or ".join(names), (resource.model_fields[field].description or "").rstrip("."))
    return found


def build_resource(
    resource: type[Resource], deployment: str, settings: Mapping[str, tuple[str, str]], **given: Any
) -> Resource:
    """`resource` from the variables' strings and `given`; a value a field refuses is named by its variable."""
    values = {field: value for field, (_, value) in settings.items()} | given
    try:
        return resource(**values)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else ""
            name = settings[field][0] if field in settings else f"{resource.__name__}.{field}"
            problems.append(f"{name}={values.get(field)!r} is not valid: {problem['msg']}")
        raise DeploymentError(f"{'; '.join(problems)} ({DEPLOYMENT_VARIABLE}={deployment})") from None


# Which instance runs the project: `local` (dagster dev on SQLite) or `team` (services on Postgres, an MLflow
# tracking server with logins; docs/team.md). The Makefile picks the Dagster home and workspace from it.
INSTANCE_VARIABLE = "KEEL_INSTANCE"
INSTANCES = ("local", "team")


def instance_profile(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    profile = setting(environ, INSTANCE_VARIABLE) or "local"
    if profile not in INSTANCES:
        raise DeploymentError(f"{INSTANCE_VARIABLE}={profile!r} is not one of {', '.join(INSTANCES)}")
    return profile


def shared(root: Path, storage: ArtifactStore) -> dict[str, Any]:
    """What every deployment has: the settings, the DVC repository, the MLflow registry, and the
    deployment's artifact store with the IO manager that keeps the assets' records in it.

    On the team instance no alias moves without an authenticated MLflow user (resources/registry.py).
    """
    params = ParamsResource(project_dir=str(root))
    team = instance_profile() == "team"
    return {
        "params": params,
        "dvc": DvcResource(repo_dir=str(root)),
        "registry": ModelRegistry(root=str(root / "var" / "mlflow"), params=params, require_identity=team),
        "storage": storage,
        "io_manager": RecordIOManager(storage=storage),
        "endpoint": LocalEndpoint(),  # the serving endpoint a rollout is applied to; the clouds' replace it
    }


# Where `make ui` serves the local store's HTML reports (demo/ui.py); links in metadata point here.
REPORTS_URL_VARIABLE = "KEEL_REPORTS_URL"
DEFAULT_REPORTS_URL = "http://127.0.0.1:3001"


def reports_url(environ: Mapping[str, str], deployment: str) -> str:
    value = (setting(environ, REPORTS_URL_VARIABLE) or DEFAULT_REPORTS_URL).rstrip("/")
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


SAGEMAKER_SETTINGS: Settings = {
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "role_arn": "KEEL_SAGEMAKER_ROLE_ARN",
    "image_uri": "KEEL_SAGEMAKER_IMAGE_URI",
    "instance_type": "KEEL_SAGEMAKER_INSTANCE_TYPE",
    "instance_count": "KEEL_SAGEMAKER_INSTANCE_COUNT",
    "volume_size_gb": "KEEL_SAGEMAKER_VOLUME_GB",
    "spot": "KEEL_SAGEMAKER_SPOT",
    "max_runtime_seconds": "KEEL_SAGEMAKER_MAX_RUNTIME_SECONDS",
    "max_wait_seconds": "KEEL_SAGEMAKER_MAX_WAIT_SECONDS",
    "poll_interval_seconds": "KEEL_SAGEMAKER_POLL_SECONDS",
    "message_interval_seconds": "KEEL_PIPES_MESSAGE_INTERVAL",
    "endpoint_url": "KEEL_SAGEMAKER_ENDPOINT_URL",
}


# The SageMaker endpoint a rollout is applied to: the training role unless told otherwise.
SAGEMAKER_ENDPOINT_SETTINGS: Settings = {
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "role_arn": ("KEEL_SAGEMAKER_ENDPOINT_ROLE_ARN", "KEEL_SAGEMAKER_ROLE_ARN"),
    "image_uri": "KEEL_SERVING_IMAGE_URI",
    "endpoint_name": "KEEL_SAGEMAKER_ENDPOINT_NAME",
    "instance_type": "KEEL_SAGEMAKER_ENDPOINT_INSTANCE_TYPE",
    "instance_count": "KEEL_SAGEMAKER_ENDPOINT_INSTANCE_COUNT",
    "endpoint_url": "KEEL_SAGEMAKER_ENDPOINT_URL",
}


def aws(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """SageMaker training jobs, artifacts under KEEL_S3_ROOT (docs/cloud.md lists every variable)."""
    environ = os.environ if environ is None else environ
    s3_root = storage_root(environ, "aws", "KEEL_S3_ROOT", "s3", "s3://bucket/prefix for artifacts and jobs")
    compute = build_resource(
        SageMakerCompute,
        "aws",
        read_settings(SageMakerCompute, "aws", SAGEMAKER_SETTINGS, environ),
        pipes_uri=f"{s3_root}/pipes",  # Pipes context and messages, one folder per job
        output_uri=f"{s3_root}/sagemaker-jobs",  # each job's model.tar.gz, before it is unpacked
    )
    endpoint = build_resource(
        SageMakerEndpoint, "aws", read_settings(SageMakerEndpoint, "aws", SAGEMAKER_ENDPOINT_SETTINGS, environ)
    )
    return {**shared(root, ArtifactStore(root=s3_root)), "compute": compute, "endpoint": endpoint}


VERTEX_SETTINGS: Settings = {
    "project": ("KEEL_VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT"),
    "location": "KEEL_VERTEX_LOCATION",
    "image_uri": "KEEL_VERTEX_IMAGE_URI",
    "service_account": "KEEL_VERTEX_SERVICE_ACCOUNT",
    "machine_type": "KEEL_VERTEX_MACHINE_TYPE",
    "replica_count": "KEEL_VERTEX_REPLICA_COUNT",
    "timeout_seconds": "KEEL_VERTEX_TIMEOUT_SECONDS",
    "poll_interval_seconds": "KEEL_VERTEX_POLL_SECONDS",
    "message_interval_seconds": "KEEL_PIPES_MESSAGE_INTERVAL",
    "api_endpoint": "KEEL_VERTEX_API_ENDPOINT",
}


VERTEX_ENDPOINT_SETTINGS: Settings = {
    "project": ("KEEL_VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT"),
    "location": "KEEL_VERTEX_LOCATION",
    "image_uri": "KEEL_SERVING_IMAGE_URI",
    "endpoint_id": "KEEL_VERTEX_ENDPOINT_ID",
    "machine_type": "KEEL_VERTEX_ENDPOINT_MACHINE_TYPE",
    "min_replicas": "KEEL_VERTEX_ENDPOINT_MIN_REPLICAS",
    "api_endpoint": "KEEL_VERTEX_API_ENDPOINT",
}


def gcp(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Vertex AI custom jobs, artifacts under KEEL_GCS_ROOT (docs/cloud.md lists every variable).

    Credentials are Application Default Credentials for the Vertex API and Cloud Storage alike;
    STORAGE_EMULATOR_HOST, when set, points Cloud Storage at an emulator.
    """
    environ = os.environ if environ is None else environ
    gcs_root = storage_root(environ, "gcp", "KEEL_GCS_ROOT", "gs", "gs://bucket/prefix for artifacts and jobs")
    compute = build_resource(
        VertexCompute,
        "gcp",
        read_settings(VertexCompute, "gcp", VERTEX_SETTINGS, environ),
        pipes_uri=f"{gcs_root}/pipes",  # Pipes context and messages, one folder per job
        output_uri=f"{gcs_root}/vertex-jobs",  # each job's baseOutputDirectory (AIP_MODEL_DIR, ...)
    )
    endpoint = build_resource(
        VertexEndpoint, "gcp", read_settings(VertexEndpoint, "gcp", VERTEX_ENDPOINT_SETTINGS, environ)
    )
    return {**shared(root, ArtifactStore(root=gcs_root)), "compute": compute, "endpoint": endpoint}


AZUREML_SETTINGS: Settings = {
    "subscription_id": "KEEL_AZUREML_SUBSCRIPTION_ID",
    "resource_group": "KEEL_AZUREML_RESOURCE_GROUP",
    "workspace": "KEEL_AZUREML_WORKSPACE",
    "compute": "KEEL_AZUREML_COMPUTE",
    "datastore": "KEEL_AZUREML_DATASTORE",
    "image": "KEEL_AZUREML_IMAGE",
    "environment": "KEEL_AZUREML_ENVIRONMENT",
    "identity_client_id": "KEEL_AZUREML_IDENTITY_CLIENT_ID",
    "experiment": "KEEL_AZUREML_EXPERIMENT",
    "vm_size": "KEEL_AZUREML_VM_SIZE",
    "resource_manager_url": "KEEL_AZUREML_RESOURCE_MANAGER_URL",
    "poll_interval_seconds": "KEEL_AZUREML_POLL_SECONDS",
    "message_interval_seconds": "KEEL_PIPES_MESSAGE_INTERVAL",
}


AZUREML_ENDPOINT_SETTINGS: Settings = {
    "subscription_id": "KEEL_AZUREML_SUBSCRIPTION_ID",
    "resource_group": "KEEL_AZUREML_RESOURCE_GROUP",
    "workspace": "KEEL_AZUREML_WORKSPACE",
    "location": "KEEL_AZUREML_LOCATION",
    "image": "KEEL_SERVING_IMAGE_URI",
    "endpoint_name": "KEEL_AZUREML_ENDPOINT_NAME",
    "instance_type": "KEEL_AZUREML_ENDPOINT_INSTANCE_TYPE",
    "instance_count": "KEEL_AZUREML_ENDPOINT_INSTANCE_COUNT",
    "resource_manager_url": "KEEL_AZUREML_RESOURCE_MANAGER_URL",
}


def azure(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Azure ML command jobs, artifacts under KEEL_AZURE_STORAGE_ROOT (docs/cloud.md lists every variable).

    Storage access comes from the environment as adlfs and azure-storage-blob read it: the account
    in AZURE_STORAGE_ACCOUNT_NAME with Entra ID (DefaultAzureCredential), or, for Azurite and
    development, AZURE_STORAGE_CONNECTION_STRING (passed to the resource as a dg.EnvVar, never a value).
    """
    environ = os.environ if environ is None else environ
    root_uri = storage_root(environ, "azure", "KEEL_AZURE_STORAGE_ROOT", "az", "az://container/prefix for artifacts")
    settings = read_settings(AzureMLCompute, "azure", AZUREML_SETTINGS, environ)
    if ("image" in settings) == ("environment" in settings):
        raise DeploymentError(
            f"{DEPLOYMENT_VARIABLE}=azure needs KEEL_AZUREML_IMAGE or KEEL_AZUREML_ENVIRONMENT (exactly one)"
        )
    account = setting(environ, "AZURE_STORAGE_ACCOUNT_NAME")
    account_url = setting(environ, "KEEL_AZURE_STORAGE_ACCOUNT_URL") or (
        f"https://{account}.blob.core.windows.net" if account else None
    )
    if not account_url:
        raise DeploymentError(
            f"{DEPLOYMENT_VARIABLE}=azure needs KEEL_AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_ACCOUNT_NAME"
        )
    connection = "AZURE_STORAGE_CONNECTION_STRING"
    compute = build_resource(
        AzureMLCompute,
        "azure",
        settings,
        container=root_uri.removeprefix("az://").split("/", 1)[0],
        storage_account_url=account_url,
        storage_connection_string=dg.EnvVar(connection) if setting(environ, connection) else None,
    )
    endpoint = build_resource(
        AzureMLEndpoint, "azure", read_settings(AzureMLEndpoint, "azure", AZUREML_ENDPOINT_SETTINGS, environ)
    )
    return {**shared(root, ArtifactStore(root=root_uri)), "compute": compute, "endpoint": endpoint}


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
