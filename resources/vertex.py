"""Vertex AI custom jobs as a compute backend (KEEL_DEPLOYMENT=gcp), over the REST API with google-auth.

`VertexCompute.run` turns one entry point call into one CustomJob:

- one worker pool runs the project's image with `python -m <module>` as the container command and
  `--<name> <gs:// uri> ...` as its arguments, so the command is the one LocalCompute runs;
- inputs and outputs stay the gs:// URIs the asset asked for: the job's service account reads and
  writes Cloud Storage directly (gcsfs), so outputs end where the asset expects them with no copy
  after the job, for file and folder outputs alike. Vertex's own output folder (AIP_MODEL_DIR under
  `baseOutputDirectory`) is one folder per job meant for Vertex's model upload, which Keel does not
  use (MLflow is the registry); `ml/runtime.py` uses it only for outputs given as bare names;
- Dagster Pipes travels through GCS: `PipesGCSContextInjector` writes the context and passes only
  its location, the entry point writes messages to GCS (`KEEL_PIPES_TRANSPORT=gcs`) and
  `PipesGCSMessageReader` reads them back.

Creating, polling (a few failed reads are retried), cancelling on an interrupted run and failing
with the job's `error.message` are `CloudJobCompute.run` (resources/cloud_job.py); this module
makes the REST calls.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from resources.cloud_job import CloudJobCompute, JobState, Platform, job_name
from resources.compute import entry_point_command
from resources.pipes_messages import KeyPrefixedMessages

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
TERMINAL_STATES = (SUCCEEDED, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
MAX_ENV_VARS = 100  # ContainerSpec.env limit
MAX_DISPLAY_NAME = 128
LABEL_VALUE = re.compile(r"[^a-z0-9_-]+")
JOB_RESOURCE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/customJobs/([^/]+)$")
PIPES_TRANSPORT = {"KEEL_PIPES_TRANSPORT": "gcs"}


def _load_dagster_gcp_pipes() -> tuple[type, type]:
    """dagster_gcp's PipesGCSContextInjector and PipesGCSMessageReader.

    `dagster_gcp/pipes/__init__.py` also imports the Dataproc client, which needs the
    `dagster-gcp[dataproc]` extra (google-cloud-dataproc) that Keel does not install. The two classes
    live in modules of their own (dagster_gcp/pipes/context_injectors.py, message_readers.py) that
    need only dagster and google-cloud-storage, so without the extra those files are loaded directly.
    """
    try:
        from dagster_gcp.pipes import PipesGCSContextInjector, PipesGCSMessageReader

        return PipesGCSContextInjector, PipesGCSMessageReader
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("google.cloud.dataproc"):
            raise
    import dagster_gcp

    folder = Path(dagster_gcp.__file__).parent / "pipes"

    def load(stem: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"keel_dagster_gcp_pipes_{stem}", folder / f"{stem}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {folder / stem}.py from dagster-gcp")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load("context_injectors").PipesGCSContextInjector, load("message_readers").PipesGCSMessageReader


PipesGCSContextInjector, PipesGCSMessageReader = _load_dagster_gcp_pipes()


def split_gcs(uri: str, what: str) -> tuple[str, str]:
    """(bucket, key) of a gs:// URI; anything else is refused with `what` in the message."""
    if not uri.startswith("gs://") or len(uri) <= len("gs://"):
        raise ValueError(f"{what} {uri!r} is not a gs:// URI; Vertex AI jobs read and write Cloud Storage only")
    bucket, _, key = uri.removeprefix("gs://").partition("/")
    return bucket, key


def custom_job_display_name(prefix: str, module: str, run_id: str, suffix: str | None = None) -> str:
    """`<prefix>-<module>-<run id>-<random>`: unique per call, readable in the console, ≤128 chars."""
    return job_name(prefix, module, run_id, max_length=MAX_DISPLAY_NAME, suffix=suffix)


def label_value(value: str) -> str:
    """A CustomJob label value: lowercase letters, digits, `_` and `-`, at most 63 characters."""
    return LABEL_VALUE.sub("-", value.lower())[:63]


def check_endpoint(url: str) -> str:
    """The API endpoint without a trailing slash; plain http only to this machine (a fake), never with a token abroad."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname:
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        try:
            if ipaddress.ip_address(host).is_loopback:
                return url.rstrip("/")
        except ValueError:
            pass
    raise ValueError(f"Vertex AI api_endpoint {url!r} must be https:// (plain http only to a loopback address)")


def with_environment(custom_job: Mapping[str, Any], extra: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the CustomJob body whose worker pools' containers also get `extra` as environment."""
    body = {**custom_job, "jobSpec": {**custom_job["jobSpec"]}}
    pools = []
    for pool in body["jobSpec"]["workerPoolSpecs"]:
        container = dict(pool["containerSpec"])
        env = {item["name"]: item["value"] for item in container.get("env", [])} | dict(extra)
        if len(env) > MAX_ENV_VARS:
            raise ValueError(
                f"the job's container would get {len(env)} environment variables; Vertex AI allows {MAX_ENV_VARS}"
            )
        container["env"] = [{"name": name, "value": value} for name, value in sorted(env.items())]
        pools.append({**pool, "containerSpec": container})
    body["jobSpec"]["workerPoolSpecs"] = pools
    return body


def replicated(custom_job: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """The CustomJob on `replicas` machines: workerPoolSpecs[0] is the primary replica (Vertex allows it one),
    workerPoolSpecs[1] the same container on `replicas - 1` more; each learns its rank from CLUSTER_SPEC."""
    primary = custom_job["jobSpec"]["workerPoolSpecs"][0]
    pools = [{**primary, "replicaCount": 1}, {**primary, "replicaCount": replicas - 1}]
    return {**custom_job, "jobSpec": {**custom_job["jobSpec"], "workerPoolSpecs": pools}}


class PrefixedGCSMessageReader(KeyPrefixedMessages, PipesGCSMessageReader):
    """PipesGCSMessageReader whose message chunks go under `key_prefix`."""


class VertexAPIError(Exception):
    """The Vertex AI API refused a call; the message names the call, the HTTP status and Google's reason."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        reason = error.get("message") or (str(body)[:300] if body else "no message")
        code = error.get("status") or ""
        super().__init__(f"Vertex AI {method} {path} answered {status} {code}: {reason}".replace("  ", " "))
        self.status = status
        self.retryable = status == 429 or status >= 500


class VertexAPI:
    """The Vertex AI REST API through a google-auth AuthorizedSession."""

    def __init__(self, session: Any, endpoint: str) -> None:
        self.session = session
        self.endpoint = endpoint  # VertexCompute.endpoint(): https, or http to this machine only

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One REST call (`path` starts with /v1/); errors raise VertexAPIError with Google's message."""
        response = self.session.request(method, f"{self.endpoint}{path}", json=body, timeout=60)
        try:
            document = response.json() if response.content else {}
        except ValueError:
            document = {"error": {"message": response.text[:300]}}
        if response.status_code >= 400:
            raise VertexAPIError(method, path, response.status_code, document)
        return document


@dataclass(frozen=True)
class VertexClients:
    api: VertexAPI
    storage: Any  # google.cloud.storage.Client, for the Pipes context and messages


SINGLE_REPLICA = (
    "only 1 replica: the ml entry points are single-process, and every replica would run the same command "
    "and race on its outputs and Pipes messages; a sharded scoring day asks for its replicas itself "
    "(params.yaml scoring.shards)"
)


class VertexCompute(CloudJobCompute):
    """Runs an `ml` entry point as a Vertex AI custom job in the project's image."""

    platform = Platform(
        "Vertex AI custom job", cancelling="cancelling", succeeded="succeeded", max_name_length=MAX_DISPLAY_NAME
    )

    project: str = Field(description="Google Cloud project ID the jobs run in.")
    location: str = Field(description="Vertex AI region, e.g. europe-west4.")
    image_uri: str = Field(description="Artifact Registry URI of the project's image (Dockerfile).")
    service_account: str = Field(description="Service account email the job runs as.")
    pipes_uri: str = Field(description="gs:// prefix for the Pipes context and messages.")
    output_uri: str = Field(description="gs:// prefix for each job's baseOutputDirectory (AIP_MODEL_DIR, ...).")
    machine_type: str = Field(default="n1-standard-4", description="Compute Engine machine type of the worker.")
    replica_count: int = Field(default=1, description=f"Replicas of the worker pool: {SINGLE_REPLICA}.")
    timeout_seconds: int | None = Field(default=3600, ge=1, description="scheduling.timeout; None: Vertex's 7 days.")
    api_endpoint: str | None = Field(
        default=None,
        description="Vertex AI API endpoint; default https://{location}-aiplatform.googleapis.com. Plain http only "
        "to a loopback address (a fake), so a token never travels unencrypted.",
    )

    @field_validator("replica_count")
    @classmethod
    def _single_replica(cls, value: int) -> int:
        if value != 1:
            raise PydanticCustomError("single_replica", SINGLE_REPLICA)
        return value

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        try:
            return None if value is None else check_endpoint(value)
        except ValueError as error:
            raise PydanticCustomError("endpoint", "{reason}", {"reason": str(error)}) from None

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def endpoint(self) -> str:
        return check_endpoint(self.api_endpoint or f"https://{self.location}-aiplatform.googleapis.com")

    def credentials(self) -> Any:
        """Application Default Credentials (a service account key, workload identity, gcloud's login)."""
        import google.auth

        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return credentials

    def session(self) -> Any:
        from google.auth.transport.requests import AuthorizedSession

        return AuthorizedSession(self.credentials())

    def storage_client(self) -> Any:
        from google.cloud import storage  # STORAGE_EMULATOR_HOST, when set, points it at an emulator

        return storage.Client(project=self.project)

    def custom_job_request(
        self, display_name: str, module: str, inputs: Mapping[str, str], outputs: Mapping[str, str], run_id: str
    ) -> dict[str, Any]:
        """The CustomJob body for one entry point call (without the Pipes bootstrap)."""
        for name, uri in sorted(inputs.items()):
            split_gcs(uri, f"input {name!r}")
        for name, uri in sorted(outputs.items()):
            split_gcs(uri, f"output {name!r}")
        split_gcs(self.output_uri, "output_uri")
        command = entry_point_command("python", module, inputs, outputs)
        env = {**self.env, **PIPES_TRANSPORT}
        job_spec: dict[str, Any] = {
            "workerPoolSpecs": [
                {
                    "machineSpec": {"machineType": self.machine_type},
                    "replicaCount": self.replica_count,
                    "containerSpec": {
                        "imageUri": self.image_uri,
                        "command": command[:3],
                        "args": command[3:],
                        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                    },
                }
            ],
            "serviceAccount": self.service_account,
            "baseOutputDirectory": {"outputUriPrefix": f"{self.output_uri.rstrip('/')}/{display_name}/"},
        }
        if self.timeout_seconds:
            job_spec["scheduling"] = {"timeout": f"{self.timeout_seconds}s"}
        return {
            "displayName": display_name,
            "jobSpec": job_spec,
            "labels": {"keel-module": label_value(module), "dagster-run-id": label_value(run_id)},
        }

    # ---- the CloudJobCompute hooks ----

    def connect(self) -> VertexClients:
        return VertexClients(api=VertexAPI(self.session(), self.endpoint()), storage=self.storage_client())

    def build_request(
        self,
        clients: VertexClients,
        name: str,
        module: str,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        run_id: str,
    ) -> dict[str, Any]:
        return self.custom_job_request(name, module, inputs, outputs, run_id)

    def pipes_channels(
        self, clients: VertexClients, name: str
    ) -> tuple[dg.PipesContextInjector, dg.PipesMessageReader]:
        bucket, prefix = split_gcs(self.pipes_uri, "pipes_uri")
        prefix = f"{prefix.strip('/')}/{name}".lstrip("/")
        injector = PipesGCSContextInjector(bucket=bucket, client=clients.storage, key_prefix=f"{prefix}/context-")
        reader = PrefixedGCSMessageReader(
            bucket=bucket,
            client=clients.storage,
            key_prefix=f"{prefix}/messages",
            interval=self.message_interval_seconds,
        )
        return injector, reader

    def start(self, clients: VertexClients, request: dict[str, Any], bootstrap_env: Mapping[str, str]) -> str:
        body = with_environment(request, bootstrap_env)
        return clients.api.call("POST", f"/v1/{self.parent}/customJobs", body)["name"]

    def describe(self, clients: VertexClients, job: str) -> JobState:
        document = clients.api.call("GET", f"/v1/{job}")
        state = document.get("state", "JOB_STATE_UNSPECIFIED")
        failed = state in TERMINAL_STATES and state != SUCCEEDED
        reason = (document.get("error") or {}).get("message") or "Vertex AI gave no error message"
        return JobState(
            status=state,
            terminal=state in TERMINAL_STATES,
            succeeded=state == SUCCEEDED,
            failure_reason=reason if failed else "",
            response=document,
        )

    def is_transient(self, error: Exception) -> bool:
        # requests' ConnectionError and Timeout are OSErrors; Google answers 429 and 5xx for a passing trouble.
        return isinstance(error, OSError) or (isinstance(error, VertexAPIError) and error.retryable)

    def replicate(self, request: dict[str, Any], replicas: int) -> dict[str, Any]:
        return replicated(request, replicas)

    def cancel(self, clients: VertexClients, job: str) -> None:
        clients.api.call("POST", f"/v1/{job}:cancel", {})

    def job_usage(
        self, clients: VertexClients, job: str, state: JobState, observed_seconds: float, replicas: int = 1
    ) -> dict[str, Any]:
        """The job's startTime to endTime (what this process saw when Vertex gave neither) x its replicas
        (`replicas` machines for a sharded day)."""
        document = state.response or {}
        seconds = observed_seconds
        if document.get("startTime") and document.get("endTime"):
            start, end = (
                dt.datetime.fromisoformat(document[k].replace("Z", "+00:00")) for k in ("startTime", "endTime")
            )
            seconds = (end - start).total_seconds()
        return {
            "platform": "vertex",
            "instance_type": self.machine_type,
            "instance_count": self.replica_count * replicas,
            "seconds": round(seconds, 3),
        }

    def job_metadata(self, job: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"vertex_custom_job": job}
        found = JOB_RESOURCE.match(job)  # the console takes the project number the resource name carries
        if found:
            project, location, number = found.groups()
            metadata["vertex_custom_job_url"] = dg.MetadataValue.url(
                f"https://console.cloud.google.com/ai/platform/locations/{location}/training/{number}?project={project}"
            )
        return metadata
