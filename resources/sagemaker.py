"""SageMaker training jobs as a compute backend (KEEL_DEPLOYMENT=aws), with plain boto3.

`SageMakerCompute.run` turns one entry point call into one training job:

- the project's image runs `python -m <module> --<name> <s3 uri> ...` (ContainerEntrypoint and
  ContainerArguments), so the command is the one LocalCompute runs;
- every input becomes a File-mode channel of the same name (its S3 prefix); `ml/runtime.py` maps the
  argument to the channel's copy inside the container;
- outputs are written under /opt/ml/model/<name>; SageMaker packs that folder into
  `<S3OutputPath>/<job>/output/model.tar.gz`, and after the job completes this backend unpacks each
  output to the URI the asset asked for;
- Dagster Pipes travels through S3: `PipesS3ContextInjector` writes the context and passes only its
  key (SageMaker caps environment values at 512 characters), the entry point writes messages to
  S3 (`KEEL_PIPES_TRANSPORT=s3`) and `PipesS3MessageReader` reads them back.

Starting, polling, stopping on an interrupted run and failing with SageMaker's FailureReason are
`CloudJobCompute.run` (resources/cloud_job.py); this module makes the boto3 calls.
"""

from __future__ import annotations

import re
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader
from pydantic import Field

from resources.cloud_job import CloudJobCompute, JobState, Platform, job_name
from resources.compute import entry_point_command
from resources.pipes_messages import KeyPrefixedMessages

TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
MAX_JOB_NAME = 63
MAX_ENV_VALUE = 512  # SageMaker's limit per training-job environment value (not checked client-side)
MAX_ARGUMENT = 256  # ContainerArguments items
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")
ENV_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,511}$")
PIPES_TRANSPORT = {"KEEL_PIPES_TRANSPORT": "s3"}
DIRECT_OUTPUTS = "KEEL_SAGEMAKER_DIRECT_OUTPUTS"  # read by ml/runtime.py: outputs stay their s3:// URIs
# Codes of a DescribeTrainingJob refused for the call rate, not for the call (HTTP 400 with these codes).
THROTTLING = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}


def split_s3(uri: str, what: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI; anything else is refused with `what` in the message."""
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(f"{what} {uri!r} is not an s3:// URI; SageMaker jobs read and write S3 only")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def training_job_name(prefix: str, module: str, run_id: str, suffix: str | None = None) -> str:
    """A unique, valid job name: `<prefix>-<module>-<run id>-<random>`, ≤63 chars of [a-zA-Z0-9-]."""
    return job_name(prefix, module, run_id, max_length=MAX_JOB_NAME, suffix=suffix)


def check_environment(environment: Mapping[str, str]) -> None:
    """Fail before the request for what SageMaker would refuse: bad names and values over 512 characters."""
    for name, value in environment.items():
        if not ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not valid for a SageMaker training job")
        if len(value) > MAX_ENV_VALUE:
            raise ValueError(
                f"environment variable {name} is {len(value)} characters; SageMaker allows {MAX_ENV_VALUE}"
            )


class PrefixedS3MessageReader(KeyPrefixedMessages, PipesS3MessageReader):
    """PipesS3MessageReader whose message chunks go under `key_prefix`."""


@dataclass(frozen=True)
class SageMakerClients:
    sagemaker: Any
    s3: Any


class SageMakerCompute(CloudJobCompute):
    """Runs an `ml` entry point as a SageMaker training job in the project's image."""

    platform = Platform(
        "SageMaker training job", cancelling="stopping", succeeded="completed", max_name_length=MAX_JOB_NAME
    )

    region: str = Field(description="AWS region of the jobs and the bucket.")
    role_arn: str = Field(description="Execution role ARN the training job runs as.")
    image_uri: str = Field(description="ECR URI of the project's image (Dockerfile).")
    pipes_uri: str = Field(description="s3:// prefix for the Pipes context and messages.")
    output_uri: str = Field(description="s3:// prefix SageMaker writes each job's model.tar.gz under.")
    instance_type: str = Field(default="ml.m5.large", description="Training instance type.")
    instance_count: int = Field(default=1, ge=1, description="Number of training instances.")
    volume_size_gb: int = Field(default=30, ge=1, description="ML storage volume per instance (GB).")
    spot: bool = Field(default=False, description="Use managed spot training.")
    max_runtime_seconds: int = Field(default=3600, ge=1, description="StoppingCondition.MaxRuntimeInSeconds.")
    max_wait_seconds: int | None = Field(
        default=None, description="MaxWaitTimeInSeconds for spot jobs; default twice the runtime."
    )
    endpoint_url: str | None = Field(
        default=None, description="SageMaker API endpoint; default the region's public one (AWS_ENDPOINT_URL applies)."
    )

    def sagemaker_client(self) -> Any:
        return boto3.client("sagemaker", region_name=self.region, endpoint_url=self.endpoint_url)

    def s3_client(self) -> Any:
        return boto3.client("s3", region_name=self.region)

    def training_job_request(
        self, name: str, module: str, inputs: Mapping[str, str], outputs: Mapping[str, str], s3: Any
    ) -> dict[str, Any]:
        """The CreateTrainingJob body for one entry point call (without the Pipes bootstrap)."""
        command = entry_point_command("python", module, inputs, outputs)
        for argument in command:
            if len(argument) > MAX_ARGUMENT:
                raise ValueError(f"argument {argument[:60]}... is over SageMaker's {MAX_ARGUMENT} characters")
        for output, uri in outputs.items():
            split_s3(uri, f"output {output!r}")
        split_s3(self.output_uri, "output_uri")
        stopping = {"MaxRuntimeInSeconds": self.max_runtime_seconds}
        if self.spot:
            stopping["MaxWaitTimeInSeconds"] = self.max_wait_seconds or 2 * self.max_runtime_seconds
        return {
            "TrainingJobName": name,
            "AlgorithmSpecification": {
                "TrainingImage": self.image_uri,
                "TrainingInputMode": "File",
                "ContainerEntrypoint": command[:3],
                "ContainerArguments": command[3:],
            },
            "RoleArn": self.role_arn,
            "InputDataConfig": [self._channel(channel, uri, s3) for channel, uri in sorted(inputs.items())],
            "OutputDataConfig": {"S3OutputPath": self.output_uri.rstrip("/")},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": self.instance_count,
                "VolumeSizeInGB": self.volume_size_gb,
            },
            "StoppingCondition": stopping,
            "EnableManagedSpotTraining": self.spot,
            "Environment": {**self.env, **PIPES_TRANSPORT},
            "Tags": [{"Key": "keel:module", "Value": module}],
        }

    def _channel(self, name: str, uri: str, s3: Any) -> dict[str, Any]:
        if not CHANNEL_NAME.match(name):
            raise ValueError(f"input name {name!r} cannot be a SageMaker channel name ([A-Za-z0-9.-_], ≤64)")
        bucket, key = split_s3(uri, f"input {name!r}")
        # A folder is channelled by "<key>/", so a sibling like "<key>.config.json" is not pulled in.
        folder = key.rstrip("/") + "/"
        is_folder = bool(s3.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1).get("KeyCount"))
        if not is_folder and not s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"):
            raise FileNotFoundError(f"input {name!r}: nothing at {uri}; SageMaker would start a job without it")
        prefix = f"s3://{bucket}/{folder if is_folder else key}"
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": prefix, "S3DataDistributionType": "FullyReplicated"}
            },
        }

    # ---- the CloudJobCompute hooks ----

    def connect(self) -> SageMakerClients:
        return SageMakerClients(sagemaker=self.sagemaker_client(), s3=self.s3_client())

    def build_request(
        self,
        clients: SageMakerClients,
        name: str,
        module: str,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        run_id: str,
    ) -> dict[str, Any]:
        return self.training_job_request(name, module, inputs, outputs, clients.s3)

    def pipes_channels(
        self, clients: SageMakerClients, name: str
    ) -> tuple[PipesS3ContextInjector, PipesS3MessageReader]:
        bucket, prefix = split_s3(self.pipes_uri, "pipes_uri")
        prefix = f"{prefix.strip('/')}/{name}".lstrip("/")
        injector = PipesS3ContextInjector(bucket=bucket, client=clients.s3, key_prefix=f"{prefix}/context-")
        reader = PrefixedS3MessageReader(
            bucket=bucket, client=clients.s3, key_prefix=f"{prefix}/messages", interval=self.message_interval_seconds
        )
        return injector, reader

    def start(self, clients: SageMakerClients, request: dict[str, Any], bootstrap_env: Mapping[str, str]) -> str:
        environment = {**request.get("Environment", {}), **bootstrap_env}
        check_environment(environment)
        clients.sagemaker.create_training_job(**{**request, "Environment": environment})
        return request["TrainingJobName"]

    def describe(self, clients: SageMakerClients, job: str) -> JobState:
        described = clients.sagemaker.describe_training_job(TrainingJobName=job)
        status = described["TrainingJobStatus"]
        failed = status in TERMINAL_STATUSES and status != "Completed"
        return JobState(
            status=status,
            terminal=status in TERMINAL_STATUSES,
            succeeded=status == "Completed",
            detail=described.get("SecondaryStatus", ""),
            failure_reason=(described.get("FailureReason") or "SageMaker gave no FailureReason") if failed else "",
            response=described,
        )

    def is_transient(self, error: Exception) -> bool:
        if isinstance(error, ClientError):
            response = error.response
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return status >= 500 or response.get("Error", {}).get("Code") in THROTTLING
        return isinstance(error, BotoConnectionError | HTTPClientError)

    def replicate(self, request: dict[str, Any], replicas: int) -> dict[str, Any]:
        """The same job on `replicas` instances (algo-1 ... algo-N; ml/shards.py reads each one's rank from
        resourceconfig.json). Inputs stay FullyReplicated: every instance reads the whole day and scores its
        own rows. SageMaker keeps one instance's /opt/ml/model, so each instance writes its outputs straight
        to their S3 URIs (DIRECT_OUTPUTS, with the job role) instead of through model.tar.gz."""
        resources = {**request["ResourceConfig"], "InstanceCount": replicas}
        environment = {**request.get("Environment", {}), DIRECT_OUTPUTS: "1"}
        return {**request, "ResourceConfig": resources, "Environment": environment}

    def cancel(self, clients: SageMakerClients, job: str) -> None:
        clients.sagemaker.stop_training_job(TrainingJobName=job)

    def collect_outputs(
        self, context: dg.AssetExecutionContext, clients: SageMakerClients, state: JobState, outputs: Mapping[str, str]
    ) -> None:
        described = state.response
        if described.get("ResourceConfig", {}).get("InstanceCount", 1) > 1:
            context.log.info(f"the job's {described['ResourceConfig']['InstanceCount']} instances wrote their outputs")
            return  # a replicated job's instances wrote their outputs to S3 themselves (replicate)
        model_tar = described.get("ModelArtifacts", {}).get("S3ModelArtifacts") or (
            f"{self.output_uri.rstrip('/')}/{described['TrainingJobName']}/output/model.tar.gz"
        )
        delivered = deliver_outputs(clients.s3, model_tar, outputs)
        context.log.info(f"unpacked {model_tar} to {', '.join(delivered)}")

    def job_metadata(self, job: str) -> dict[str, Any]:
        return {
            "sagemaker_training_job": job,
            "sagemaker_training_job_url": dg.MetadataValue.url(
                f"https://{self.region}.console.aws.amazon.com/sagemaker/home?region={self.region}#/jobs/{job}"
            ),
        }

    def job_usage(
        self, clients: SageMakerClients, job: str, state: JobState, observed_seconds: float, replicas: int = 1
    ) -> dict[str, Any]:
        """What DescribeTrainingJob says SageMaker bills: BillableTimeInSeconds (spot: less than the training time)."""
        described, config = state.response, state.response.get("ResourceConfig", {})
        return {
            "platform": "sagemaker",
            "instance_type": config.get("InstanceType", self.instance_type),
            "instance_count": config.get("InstanceCount", self.instance_count),
            "billable_seconds": described.get("BillableTimeInSeconds", 0),
            "training_seconds": described.get("TrainingTimeInSeconds", 0),
        }


def deliver_outputs(s3: Any, model_tar: str, outputs: Mapping[str, str]) -> list[str]:
    """Unpack each output `name` of the job's model.tar.gz (`name` or `name/...`) to its S3 URI.

    A folder's manifest.json goes last, so a reader that waits for the manifest sees every file.
    """
    bucket, key = split_s3(model_tar, "the job's model artifact")
    with tempfile.TemporaryDirectory(prefix="keel-sagemaker-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        try:
            s3.download_file(bucket, key, str(archive))
        except Exception as error:  # botocore raises ClientError or its own 404 subclasses
            raise dg.Failure(description=f"cannot read the job's outputs at {model_tar}: {error}") from error
        unpacked = Path(tmp) / "model"
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(unpacked, filter="data")  # refuses absolute paths, links out and devices
        delivered = []
        for name, uri in sorted(outputs.items()):
            source = unpacked / name
            if not source.exists():
                found = sorted(p.name for p in unpacked.iterdir())
                raise dg.Failure(
                    description=f"the job wrote no output {name!r} (model.tar.gz at {model_tar} holds {found})"
                )
            out_bucket, out_key = split_s3(uri, f"output {name!r}")
            if source.is_file():
                s3.upload_file(str(source), out_bucket, out_key)
            else:
                files = sorted((p for p in source.rglob("*") if p.is_file()), key=lambda p: p.name == "manifest.json")
                for path in files:
                    s3.upload_file(
                        str(path), out_bucket, f"{out_key.rstrip('/')}/{path.relative_to(source).as_posix()}"
                    )
            delivered.append(uri)
    return delivered
