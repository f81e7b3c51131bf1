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

`PipesVertexClient` is the generic part: create a CustomJob from a request body, poll it, cancel it
when the Dagster run is interrupted, fail with the job's `error.message`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from resources.compute import ComputeBackend, entry_point_command
from resources.pipes_messages import KeyPrefixedMessages

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
TERMINAL_STATES = (SUCCEEDED, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
MAX_ENV_VARS = 100  # ContainerSpec.env limit
MAX_DISPLAY_NAME = 128
LABEL_VALUE = re.compile(r"[^a-z0-9_-]+")
PIPES_TRANSPORT = {"KEEL_PIPES_TRANSPORT": "gcs"}
# A poll that fails this many times in a row (network, 429, 5xx) fails the step; fewer are retried.
MAX_POLL_FAILURES = 5


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
    suffix = suffix or uuid.uuid4().hex[:6]
    tail = f"-{run_id[:8]}-{suffix}"
    head = re.sub(r"[^a-zA-Z0-9-]+", "-", f"{prefix}-{module}").strip("-") or "keel"
    return f"{head[: MAX_DISPLAY_NAME - len(tail)]}{tail}"


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
    """A copy of the CustomJob body whose first worker pool's container also gets `extra` as environment."""
    body = {**custom_job, "jobSpec": {**custom_job["jobSpec"]}}
    pools = [dict(pool) for pool in body["jobSpec"]["workerPoolSpecs"]]
    container = dict(pools[0]["containerSpec"])
    env = {item["name"]: item["value"] for item in container.get("env", [])} | dict(extra)
    if len(env) > MAX_ENV_VARS:
        raise ValueError(
            f"the job's container would get {len(env)} environment variables; Vertex AI allows {MAX_ENV_VARS}"
        )
    container["env"] = [{"name": name, "value": value} for name, value in sorted(env.items())]
    pools[0] = {**pools[0], "containerSpec": container}
    body["jobSpec"]["workerPoolSpecs"] = pools
    return body


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


def _wait(seconds: float) -> None:
    time.sleep(seconds)


class PipesVertexClient(dg.PipesClient):
    """Runs a Vertex AI CustomJob with Dagster Pipes: the bootstrap goes into its container's environment."""

    def __init__(
        self,
        session: Any,
        api_endpoint: str,
        context_injector: dg.PipesContextInjector,
        message_reader: dg.PipesMessageReader,
        poll_interval: float = 30.0,
        forward_termination: bool = True,
    ) -> None:
        self.session = session  # a google.auth.transport.requests.AuthorizedSession
        self.api_endpoint = check_endpoint(api_endpoint)
        self.context_injector = context_injector
        self.message_reader = message_reader
        self.poll_interval = poll_interval
        self.forward_termination = forward_termination

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One REST call (`path` starts with /v1/); errors raise VertexAPIError with Google's message."""
        response = self.session.request(method, f"{self.api_endpoint}{path}", json=body, timeout=60)
        try:
            document = response.json() if response.content else {}
        except ValueError:
            document = {"error": {"message": response.text[:300]}}
        if response.status_code >= 400:
            raise VertexAPIError(method, path, response.status_code, document)
        return document

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        parent: str,
        custom_job: Mapping[str, Any],
        extras: Mapping[str, Any] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        """Create the CustomJob `custom_job` describes under `parent` (projects/p/locations/l), wait for its end."""
        display_name = custom_job["displayName"]
        with dg.open_pipes_session(
            context=context,
            context_injector=self.context_injector,
            message_reader=self.message_reader,
            extras=dict(extras or {}),
        ) as session:
            body = with_environment(custom_job, session.get_bootstrap_env_vars())
            try:
                name = self.call("POST", f"/v1/{parent}/customJobs", body)["name"]
            except VertexAPIError as error:
                raise dg.Failure(description=f"cannot create Vertex AI custom job {display_name}: {error}") from None
            context.log.info(f"started Vertex AI custom job {display_name} ({name})")
            try:
                job = self._wait_for_end(context, name)
            except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
                if self.forward_termination:
                    context.log.warning(f"run interrupted: cancelling Vertex AI custom job {name}")
                    try:
                        self.call("POST", f"/v1/{name}:cancel", {})
                    except Exception as error:  # the interruption stays the error that ends the step
                        context.log.error(f"could not cancel Vertex AI custom job {name}: {error}")
                raise
            state = job.get("state", "JOB_STATE_UNSPECIFIED")
            if state != SUCCEEDED:
                reason = (job.get("error") or {}).get("message") or "Vertex AI gave no error message"
                raise dg.Failure(
                    description=f"Vertex AI custom job {display_name} ({name}) ended {state}: {reason}",
                    metadata={"vertex_custom_job": name, "state": state, "error": reason},
                )
            context.log.info(f"Vertex AI custom job {display_name} succeeded")
        return dg.PipesClientCompletedInvocation(session, metadata={"vertex_custom_job": name})

    def _wait_for_end(self, context: dg.AssetExecutionContext | dg.OpExecutionContext, name: str) -> dict[str, Any]:
        seen, failures = None, 0
        while True:
            try:
                job = self.call("GET", f"/v1/{name}")
                failures = 0
            except (VertexAPIError, OSError) as error:  # requests' ConnectionError is an OSError
                failures += 1
                if getattr(error, "retryable", True) is False or failures >= MAX_POLL_FAILURES:
                    raise dg.Failure(
                        description=f"cannot read the state of Vertex AI custom job {name}: {error}"
                    ) from error
                context.log.warning(f"reading Vertex AI custom job {name} failed ({error}); retrying")
                _wait(self.poll_interval)
                continue
            state = job.get("state", "JOB_STATE_UNSPECIFIED")
            if state != seen:  # log transitions, not every poll
                context.log.info(f"Vertex AI custom job {name}: {state}")
                seen = state
            if state in TERMINAL_STATES:
                return job
            _wait(self.poll_interval)


class VertexCompute(ComputeBackend):
    """Runs an `ml` entry point as a Vertex AI custom job in the project's image."""

    project: str = Field(description="Google Cloud project ID the jobs run in.")
    location: str = Field(description="Vertex AI region, e.g. europe-west4.")
    image_uri: str = Field(description="Artifact Registry URI of the project's image (Dockerfile).")
    service_account: str = Field(description="Service account email the job runs as.")
    pipes_uri: str = Field(description="gs:// prefix for the Pipes context and messages.")
    output_uri: str = Field(description="gs:// prefix for each job's baseOutputDirectory (AIP_MODEL_DIR, ...).")
    machine_type: str = Field(default="n1-standard-4", description="Compute Engine machine type of the worker.")
    replica_count: int = Field(
        default=1,
        ge=1,
        le=1,
        description="Replicas of the worker pool. The ml entry points are single-process: every replica would run "
        "the same command and race on the outputs and Pipes messages, so only 1 is accepted.",
    )
    timeout_seconds: int | None = Field(default=3600, ge=1, description="scheduling.timeout; None: Vertex's 7 days.")
    poll_interval_seconds: float = Field(default=30.0, gt=0, description="Seconds between state reads.")
    message_interval_seconds: float = Field(default=5.0, gt=0, description="Seconds between Pipes message reads.")
    api_endpoint: str | None = Field(
        default=None, description="Vertex AI API endpoint; default https://{location}-aiplatform.googleapis.com."
    )
    display_name_prefix: str = Field(default="keel", description="First part of every custom job's display name.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for the job (no secrets)."
    )

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

    def run(
        self,
        context: dg.AssetExecutionContext,
        module: str,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        extras: Mapping[str, Any] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        display_name = custom_job_display_name(self.display_name_prefix, module, context.run_id)
        request = self.custom_job_request(display_name, module, inputs, outputs, context.run_id)
        bucket, prefix = split_gcs(self.pipes_uri, "pipes_uri")
        prefix = f"{prefix.strip('/')}/{display_name}".lstrip("/")
        storage = self.storage_client()
        client = PipesVertexClient(
            session=self.session(),
            api_endpoint=self.endpoint(),
            context_injector=PipesGCSContextInjector(bucket=bucket, client=storage, key_prefix=f"{prefix}/context-"),
            message_reader=PrefixedGCSMessageReader(
                bucket=bucket, client=storage, key_prefix=f"{prefix}/messages", interval=self.message_interval_seconds
            ),
            poll_interval=self.poll_interval_seconds,
        )
        return client.run(context=context, parent=self.parent, custom_job=request, extras=extras)
