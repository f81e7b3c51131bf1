"""Playing a SageMaker training container against moto, which records jobs but never runs them.

`SageMakerContainer` hooks a boto3 SageMaker client: on CreateTrainingJob it keeps the request body
and then does what SageMaker would do in the container: copy each File-mode channel from (moto's)
S3 into a throw-away `/opt/ml`-like folder, run the job's entry point command with the job's
Environment plus the SM_* variables SageMaker sets, and pack `model/` into
`<S3OutputPath>/<job>/output/model.tar.gz`. A job with `InstanceCount: N` runs N such containers
at once, algo-1 ... algo-N, each with its resourceconfig.json. moto's DescribeTrainingJob has no
TrainingTimeInSeconds or BillableTimeInSeconds: the fake adds them, from the time the job's instances
took (a spot job is billed SPOT_BILLED of it, as if SageMaker's spot price were that share). Nothing
but the job's own environment, the SM_* variables and the fake's credentials reaches the process, as in a real job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3

from tests.conftest import REPO

SPOT_BILLED = 0.3  # the share of the training time a spot job is billed in this fake


class SageMakerContainer:
    def __init__(self, work_dir: Path, aws_env: dict[str, str]) -> None:
        self.work_dir = work_dir
        self.aws_env = aws_env  # what the job's execution role would provide: credentials, region, endpoint
        self.requests: list[dict[str, Any]] = []
        self.runs: list[subprocess.CompletedProcess] = []
        self.fail_host: str | None = None  # "algo-2": that instance exits 1
        self.failed: dict[str, str] = {}  # job name -> the FailureReason SageMaker would give
        self.seconds: dict[str, int] = {}  # job name -> TrainingTimeInSeconds

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build.sagemaker.CreateTrainingJob", self._keep_request)
        client.meta.events.register("after-call.sagemaker.CreateTrainingJob", self._run_job)
        client.meta.events.register("after-call.sagemaker.DescribeTrainingJob", self._describe)
        return client

    def _describe(self, parsed: dict[str, Any], **_: Any) -> None:
        """moto marks every job Completed; a job with a failed instance is Failed, as SageMaker reports it."""
        name = parsed.get("TrainingJobName", "")
        reason = self.failed.get(name)
        if reason:
            parsed.update(TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason=reason)
        if name in self.seconds:
            request = next(r for r in self.requests if r["TrainingJobName"] == name)
            share = SPOT_BILLED if request.get("EnableManagedSpotTraining") else 1.0
            parsed["TrainingTimeInSeconds"] = self.seconds[name]
            parsed["BillableTimeInSeconds"] = max(int(self.seconds[name] * share), 1)

    def _keep_request(self, params: dict[str, Any], **_: Any) -> None:
        self.requests.append(json.loads(json.dumps(params)))

    def _run_job(self, **_: Any) -> None:
        """Every instance of the job at once (algo-1 ... algo-N, each its own /opt/ml); like SageMaker, the
        job fails when one instance fails, and only algo-1's model folder becomes model.tar.gz."""
        request = self.requests[-1]
        count = request["ResourceConfig"].get("InstanceCount", 1)
        hosts = [f"algo-{i}" for i in range(1, count + 1)]
        clock = time.monotonic()
        started = [self._start_host(request, host, hosts) for host in hosts]
        for process, _ in started:
            stdout, stderr = process.communicate(timeout=300)
            self.runs.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        name = request["TrainingJobName"]
        self.seconds[name] = max(round(time.monotonic() - clock), 1)  # SageMaker reports whole seconds
        for host, (process, _) in zip(hosts, started, strict=True):
            if process.returncode != 0 and name not in self.failed:
                self.failed[name] = f"AlgorithmError: instance {host} exited with status {process.returncode}"
        if name not in self.failed:
            self._upload_model(
                boto3.client("s3"), started[0][1] / "model", f"{request['OutputDataConfig']['S3OutputPath']}/{name}"
            )

    def _start_host(self, request: dict[str, Any], host: str, hosts: list[str]) -> tuple[subprocess.Popen, Path]:
        name = request["TrainingJobName"]
        root = self.work_dir / name / host / "opt" / "ml"
        s3 = boto3.client("s3")
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.work_dir),
            **self.aws_env,
            **request.get("Environment", {}),
            "SM_TRAINING_ENV": json.dumps({"job_name": name}),
            "SM_MODEL_DIR": str(root / "model"),
            "SM_CURRENT_HOST": host,
            "KEEL_SAGEMAKER_ROOT": str(root),  # /opt/ml is not writable here
        }
        for channel in request.get("InputDataConfig", []):
            folder = root / "input" / "data" / channel["ChannelName"]
            self._download(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], folder)
            env[f"SM_CHANNEL_{channel['ChannelName'].upper()}"] = str(folder)
        config = root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {})))
        resources = {"current_host": host, "hosts": hosts, "network_interface_name": "eth0"}
        (config / "resourceconfig.json").write_text(json.dumps(resources))
        (root / "model").mkdir(parents=True, exist_ok=True)

        spec = request["AlgorithmSpecification"]
        command = [*spec["ContainerEntrypoint"], *spec["ContainerArguments"]]
        command[0] = sys.executable if command[0] == "python" else command[0]
        if host == self.fail_host:
            command = [sys.executable, "-c", "raise SystemExit('this instance fails')"]
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return process, root

    @staticmethod
    def _download(s3: Any, prefix_uri: str, folder: Path) -> None:
        """SageMaker File mode: every object under the prefix, named relative to the prefix's last '/'."""
        bucket, _, prefix = prefix_uri.removeprefix("s3://").partition("/")
        base = prefix[: prefix.rfind("/") + 1]
        folder.mkdir(parents=True, exist_ok=True)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                target = folder / item["Key"][len(base) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))

    @staticmethod
    def _upload_model(s3: Any, model_dir: Path, job_uri: str) -> None:
        archive = model_dir.parent / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(model_dir.iterdir()):
                tar.add(path, arcname=path.name)
        bucket, _, prefix = job_uri.removeprefix("s3://").partition("/")
        s3.upload_file(str(archive), bucket, f"{prefix}/output/model.tar.gz")
