"""Azure ML backend: an `ml` entry point as an Azure ML command job, driven with `MLClient`.

The job runs the project's image (or a registered environment) on a compute cluster. Its inputs
and outputs are Azure ML data bindings over the workspace datastore that points at the artifact
container, so Azure ML mounts the inputs and uploads the outputs with the compute's identity:

- input `x` at `az://<container>/<path>` becomes `Input(uri_file | uri_folder,
  azureml://datastores/<datastore>/paths/<path>)`, mounted read-only;
- output `y` at `az://<container>/<dir>/<name>` becomes `Output(uri_folder,
  azureml://datastores/<datastore>/paths/<dir>/, mode=upload)` and the entry point writes
  `${{outputs.y}}/<name>`: Azure ML creates an output's folder before the command starts, and the
  entry points never write into an existing path, so the job's output is the parent folder and the
  entry point creates the one new child the asset asked for, right where the asset will look.

Datastore URIs name no endpoint or credential, which is why they are used rather than wasbs:// or
https:// URLs: the same request works against a real workspace and against the loopback fake the
tests run (which maps the datastore to an Azurite container).

The command passes the entry point the URIs the asset asked for and, in front of it, the local
paths Azure ML substituted (`KEEL_AZUREML_PATH_<NAME>=${{inputs.x}}`); `ml/runtime.py` swaps them
in, so the entry point reports the URIs, not a folder on the compute node. Pipes travels through
the artifact container (`PipesAzureBlobStorageContextInjector` / `...MessageReader`; in the job
`KEEL_PIPES_TRANSPORT=azureblob`).

Submitting, polling, cancelling on an interrupted run and failing with the error Azure ML recorded
are `CloudJobCompute.run` (resources/cloud_job.py); this module makes the `MLClient` calls.
dagster-azure's `PipesAzureMLClient` is not used: it reports only "Failed", and after cancelling on
an interruption it returns as if the job had succeeded.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg
import fsspec
from pydantic import Field

from resources.cloud_job import CloudJobCompute, JobState, Platform
from resources.compute import entry_point_command

PUBLIC_RESOURCE_MANAGER = "https://management.azure.com/"
PATH_VARIABLE_PREFIX = "KEEL_AZUREML_PATH_"  # read by ml/runtime.py inside the job
BLOB_SCHEMES = ("az", "abfs", "abfss")
TERMINAL_STATUSES = ("Completed", "Failed", "Canceled")
MAX_JOB_NAME = 255  # a cap for the job name (its run id); Keel's names are about 30 characters
CANCEL_WAIT_SECONDS = 120.0


class AzureMLError(ValueError):
    """The request cannot be built from the URIs and settings; the message names which."""


def split_blob_uri(uri: str) -> tuple[str, str]:
    """`az://container/path` (or abfs[s]://container[@account...]/path) -> (container, path)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in BLOB_SCHEMES:
        raise AzureMLError(
            f"{uri!r} is not an Azure Blob URI (az://container/path); an Azure ML job reads and writes the "
            "artifact container only: set the storage root to az://<container>/<prefix>"
        )
    container, _, path = rest.partition("/")
    return container.split("@", 1)[0], path.strip("/")


@dataclass(frozen=True)
class AzureMLClients:
    ml: Any  # azure.ai.ml.MLClient
    blobs: Any  # azure.storage.blob.BlobServiceClient, for the Pipes context and messages


class AzureMLCompute(CloudJobCompute):
    """Runs an `ml` entry point as an Azure ML command job; Pipes context and messages go through Azure Blob."""

    platform = Platform(
        "Azure ML job",
        cancelling="canceling",
        succeeded="completed",
        max_name_length=MAX_JOB_NAME,
        name_suffix_length=8,
    )

    subscription_id: str = Field(description="Azure subscription id of the workspace.")
    resource_group: str = Field(description="Resource group of the workspace.")
    workspace: str = Field(description="Azure ML workspace name.")
    compute: str = Field(description="Compute cluster the job runs on.")
    image: str | None = Field(default=None, description="Container image (e.g. an ACR URI); or set `environment`.")
    environment: str | None = Field(
        default=None, description="Registered environment, e.g. azureml:keel-ml:3 or azureml:keel-ml@latest."
    )
    datastore: str = Field(description="Workspace datastore registered on `container` (identity-based access).")
    container: str = Field(description="Blob container of the artifacts, the datastore and the Pipes exchange.")
    storage_account_url: str = Field(
        description="Blob endpoint of the storage account, https://<account>.blob.core.windows.net."
    )
    storage_connection_string: str | None = Field(
        default=None,
        description="Connection string for the orchestrator's Pipes blobs (Azurite, development); unset: Entra ID.",
    )
    identity_client_id: str | None = Field(
        default=None, description="Client id of the compute's user-assigned identity (AZURE_CLIENT_ID in the job)."
    )
    vm_size: str = Field(
        default="Standard_DS3_v2", description="VM size of the compute cluster: the cost estimate's price (costs:)."
    )
    experiment: str = Field(default="keel", description="Azure ML experiment the jobs are grouped under.")
    input_mode: Literal["ro_mount", "download"] = Field(default="ro_mount", description="How inputs reach the job.")
    resource_manager_url: str = Field(
        default=PUBLIC_RESOURCE_MANAGER, description="Azure Resource Manager endpoint (a loopback fake in tests)."
    )
    poll_interval_seconds: float = Field(default=15.0, gt=0, description="Seconds between job status reads.")
    message_interval_seconds: float = Field(
        default=10.0, gt=0, description="Seconds between Pipes message uploads (job) and reads (orchestrator)."
    )

    # ---- clients (overridable seams: tests swap the credential) ----

    def credential(self) -> Any:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def ml_client(self) -> Any:
        from azure.ai.ml import MLClient

        # MLClient resolves endpoints by cloud name; a non-public endpoint gets a cloud of its own,
        # named after the URL because the SDK never replaces a cloud it has registered once.
        if self.resource_manager_url == PUBLIC_RESOURCE_MANAGER:
            cloud: dict[str, Any] = {"cloud": "AzureCloud"}
        else:
            url = self.resource_manager_url
            name = "keel-" + hashlib.sha256(url.encode()).hexdigest()[:12]
            endpoints = ("resource_manager", "azure_portal", "active_directory", "aml_resource_id")
            metadata = {**dict.fromkeys(endpoints, url), "registry_discovery_endpoint": url}
            cloud = {"cloud": name, "cloud_metadata": {**metadata, "storage_endpoint": "core.windows.net"}}
        return MLClient(
            self.credential(),
            self.subscription_id,
            self.resource_group,
            self.workspace,
            enable_telemetry=False,
            show_progress=False,
            **cloud,
        )

    def blob_client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        if self.storage_connection_string:
            return BlobServiceClient.from_connection_string(self.storage_connection_string)
        return BlobServiceClient(self.storage_account_url, credential=self.credential())

    # ---- the request ----

    def datastore_uri(self, uri: str, *, parent: bool = False) -> tuple[str, str]:
        """(azureml://datastores/... URI of `uri` or of its parent folder, the last path segment)."""
        container, path = split_blob_uri(uri)
        if container != self.container:
            raise AzureMLError(
                f"{uri!r} is in container {container!r}, but datastore {self.datastore!r} is on container "
                f"{self.container!r}: the job can reach only that container"
            )
        if not parent:
            return f"azureml://datastores/{self.datastore}/paths/{path}", path.rsplit("/", 1)[-1]
        folder, _, name = path.rpartition("/")
        if not folder:
            raise AzureMLError(f"output {uri!r} must be inside a folder of container {container!r}")
        return f"azureml://datastores/{self.datastore}/paths/{folder}/", name

    def command_job(
        self, name: str, module: str, inputs: Mapping[str, str], outputs: Mapping[str, str], tags: Mapping[str, str]
    ) -> Any:
        from azure.ai.ml import Input, Output, command
        from azure.ai.ml.entities import Environment, ManagedIdentityConfiguration

        if bool(self.image) == bool(self.environment):
            raise AzureMLError("AzureMLCompute needs exactly one of `image` and `environment`")
        fs, _ = fsspec.core.url_to_fs(f"az://{self.container}")
        job_inputs, job_outputs, paths = {}, {}, {}
        for key, uri in sorted(inputs.items()):
            datastore_path, _ = self.datastore_uri(uri)
            blob_path = f"{self.container}/{split_blob_uri(uri)[1]}"
            if not fs.exists(blob_path):
                raise AzureMLError(f"input {key!r}: {uri} does not exist")
            kind = "uri_folder" if fs.isdir(blob_path) else "uri_file"
            job_inputs[key] = Input(type=kind, path=datastore_path, mode=self.input_mode)
            paths[key] = f"${{{{inputs.{key}}}}}"
        for key, uri in sorted(outputs.items()):
            folder, child = self.datastore_uri(uri, parent=True)
            target = f"{self.container}/{split_blob_uri(uri)[1]}"
            # An artifact folder is never overwritten (the entry point cannot see the remote folder from the
            # job's fresh local path, so the check is here); a one-file output such as a day's predictions is
            # replaced, as on every backend: its upload replaces the blob in one step.
            if fs.exists(target) and fs.isdir(target):
                raise AzureMLError(f"output {key!r}: {uri} already exists; artifact folders are never overwritten")
            job_outputs[key] = Output(type="uri_folder", path=folder, mode="upload")
            paths[key] = f"${{{{outputs.{key}}}}}/{shlex.quote(child)}"
        assignments = [f"{PATH_VARIABLE_PREFIX}{key.upper()}={value}" for key, value in paths.items()]
        entry_point = [shlex.quote(part) for part in entry_point_command("python", module, inputs, outputs)]
        environment_variables = {
            **self.env,
            "KEEL_PIPES_TRANSPORT": "azureblob",
            "KEEL_PIPES_MESSAGE_INTERVAL": f"{self.message_interval_seconds:g}",
            "KEEL_AZURE_STORAGE_ACCOUNT_URL": self.storage_account_url,
        }
        if self.identity_client_id:
            environment_variables["AZURE_CLIENT_ID"] = self.identity_client_id
        return command(
            name=name,
            display_name=name,
            experiment_name=self.experiment,
            command=" ".join([*assignments, *entry_point]),
            inputs=job_inputs,
            outputs=job_outputs,
            environment=Environment(image=self.image) if self.image else self.environment,
            compute=self.compute,
            environment_variables=environment_variables,
            identity=ManagedIdentityConfiguration(),  # mounts and uploads use the compute's identity
            tags=dict(tags),
        )

    # ---- the CloudJobCompute hooks ----

    def connect(self) -> AzureMLClients:
        return AzureMLClients(ml=self.ml_client(), blobs=self.blob_client())

    def build_request(
        self,
        clients: AzureMLClients,
        name: str,
        module: str,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        run_id: str,
    ) -> Any:
        tags = {"keel.dagster_run_id": run_id, "keel.module": module}
        return self.command_job(name, module, inputs, outputs, tags)

    def pipes_channels(
        self, clients: AzureMLClients, name: str
    ) -> tuple[dg.PipesContextInjector, dg.PipesMessageReader]:
        from dagster_azure.pipes import PipesAzureBlobStorageContextInjector, PipesAzureBlobStorageMessageReader

        injector = PipesAzureBlobStorageContextInjector(container=self.container, client=clients.blobs)
        reader = PipesAzureBlobStorageMessageReader(
            container=self.container, client=clients.blobs, interval=self.message_interval_seconds
        )
        return injector, reader

    def start(self, clients: AzureMLClients, request: Any, bootstrap_env: Mapping[str, str]) -> str:
        request.environment_variables = {**request.environment_variables, **bootstrap_env}
        return clients.ml.jobs.create_or_update(request).name

    def describe(self, clients: AzureMLClients, job: str) -> JobState:
        status = _status(clients.ml, job)
        failed = status in TERMINAL_STATUSES and status != "Completed"
        return JobState(
            status=status,
            terminal=status in TERMINAL_STATUSES,
            succeeded=status == "Completed",
            failure_reason=self.failure_reason(clients.ml, job) if failed else "",
        )

    def is_transient(self, error: Exception) -> bool:
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        if isinstance(error, ServiceRequestError | ServiceResponseError):  # no answer, or a broken one
            return True
        return isinstance(error, HttpResponseError) and (error.status_code or 0) in (429, *range(500, 600))

    def replicate(self, request: Any, replicas: int) -> Any:
        """The command job on `replicas` nodes. A PyTorch distribution of one process per node is what makes
        Azure ML start the command on every node and set its NODE_RANK (ml/shards.py reads it); nothing of
        PyTorch is used. Each node uploads its own files into the same output folder."""
        from azure.ai.ml import PyTorchDistribution
        from azure.ai.ml.entities import JobResourceConfiguration

        request.resources = JobResourceConfiguration(instance_count=replicas)
        request.distribution = PyTorchDistribution(process_count_per_instance=1)
        return request

    def cancel(self, clients: AzureMLClients, job: str) -> str | None:
        # Azure ML acknowledges a cancel before the compute stops the process (CancelRequested): wait, a
        # bounded while, for the job to end, so the run says how it ended (dagster-azure waited too).
        clients.ml.jobs.begin_cancel(job)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while time.monotonic() < deadline:
            status = _status(clients.ml, job)
            if status in TERMINAL_STATUSES:
                return status
            time.sleep(self.poll_interval_seconds)
        return None

    def failure_reason(self, client: Any, name: str) -> str:
        """The error Azure ML recorded for a failed job (run history), or a pointer to the logs."""
        try:
            details = client.jobs._runs_operations.get_run_details(name)  # no public API returns it
            error = details.error.error if details.error else None
            if error is not None and error.message:
                return f"{error.code}: {error.message}" if error.code else error.message
        except Exception as exc:  # the job's status is what matters; the reason is best effort
            return f"no error details ({type(exc).__name__}: {exc}); see the job's user_logs/std_log.txt"
        return "no error details recorded; see the job's user_logs/std_log.txt"

    def job_usage(
        self, clients: AzureMLClients, job: str, state: JobState, observed_seconds: float, replicas: int = 1
    ) -> dict[str, Any]:
        """Creation to end as this process saw it (the job entity has no duration) on `replicas` nodes of vm_size."""
        return {
            "platform": "azureml",
            "instance_type": self.vm_size,
            "instance_count": replicas,
            "seconds": round(observed_seconds, 3),
        }

    def job_metadata(self, job: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"azureml_job": job, "azureml_workspace": self.workspace}
        if self.resource_manager_url == PUBLIC_RESOURCE_MANAGER:  # Azure ML studio serves the public cloud
            workspace = f"/subscriptions/{self.subscription_id}/resourcegroups/{self.resource_group}"
            url = f"https://ml.azure.com/runs/{job}?wsid={workspace}/workspaces/{self.workspace}"
            metadata["azureml_job_url"] = dg.MetadataValue.url(url)
        return metadata


def _status(client: Any, name: str) -> str:
    status = client.jobs.get(name).status
    return str(getattr(status, "value", status))  # the SDK returns a str enum
