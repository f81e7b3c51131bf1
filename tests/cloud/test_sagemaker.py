"""The SageMaker backend against moto (S3 + SageMaker) with the container played by the test.

moto records training jobs but runs nothing, so `SageMakerContainer` (sagemaker_fakes.py) plays the
container on CreateTrainingJob: the real `python -m ml.train` with the job's environment and its
channels copied from moto's S3. Status sequences moto cannot produce (InProgress -> Failed/Stopped,
StopTrainingJob) come from botocore's Stubber on the SageMaker client, while S3 stays moto's.
"""

import base64
import datetime
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
from botocore.stub import ANY, Stubber

import resources.cloud_job as cloud_job
from assets.candidate_model import candidate_model
from assets.registered_model import registered_model
from orchestration import deployments
from resources.compute import ComputeBackend
from resources.sagemaker import SageMakerCompute, check_environment, training_job_name
from tests.cloud.sagemaker_fakes import SageMakerContainer
from tests.cloud.scoring import DAY, SHARDS, assert_scored_like_local, cloud_day, latest, score_day
from tests.conftest import train

FIXTURES = Path(__file__).parent / "fixtures"
BUCKET = "keel-artifacts"
ROLE = "arn:aws:iam::123456789012:role/keel-sagemaker-execution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/keel-ml:test"
MODEL = "telco_churn"


def aws_settings(aws: dict[str, str], **overrides: str) -> dict[str, str]:
    """The environment a user sets for KEEL_DEPLOYMENT=aws (docs/examples/cloud/aws.env), on moto."""
    return {
        **aws,
        "KEEL_DEPLOYMENT": "aws",
        "KEEL_S3_ROOT": f"s3://{BUCKET}/keel",
        "KEEL_SAGEMAKER_ROLE_ARN": ROLE,
        "KEEL_SAGEMAKER_IMAGE_URI": IMAGE,
        "KEEL_SAGEMAKER_POLL_SECONDS": "1",
        **overrides,
    }


@pytest.fixture
def s3(aws: dict[str, str]) -> Any:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def container(aws: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SageMakerContainer:
    """Every SageMaker client the backend makes talks to moto, and its jobs are played by this container."""
    player = SageMakerContainer(tmp_path / "containers", aws)
    real = SageMakerCompute.sagemaker_client
    monkeypatch.setattr(SageMakerCompute, "sagemaker_client", lambda self: player.attach(real(self)))
    return player


def decode_pipes_param(value: str) -> dict[str, Any]:
    return json.loads(zlib.decompress(base64.b64decode(value)))


def fixture(name: str, request: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The expected request body; KEEL_UPDATE_FIXTURES=1 rewrites it from this run (review the diff)."""
    path = FIXTURES / name
    if os.environ.get("KEEL_UPDATE_FIXTURES") == "1":
        path.write_text(json.dumps(normalised(request, run_id), indent=2, sort_keys=True) + "\n")
    return json.loads(path.read_text())


def s3_keys(s3: Any, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def normalised(request: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The request with its volatile parts (run id, random name suffix, Pipes keys) replaced by placeholders."""
    text = json.dumps(request, sort_keys=True).replace(run_id, "<run_id>")
    text = re.sub(r"keel-ml-(train|score)-[0-9a-f]{8}-[0-9a-f]{6}", "<training_job_name>", text)
    text = re.sub(r"(/models/registered/[^/\"]+/)[0-9a-f]{64}", r"\1<manifest_sha256>", text)  # content-keyed
    document = json.loads(text)
    for name in ("DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"):
        document["Environment"][name] = "<encoded pipes params>"
    return document


def test_job_names_are_valid_and_unique():
    pattern = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's TrainingJobName rule
    run_id = "0123abcd-4567-89ef-0123-456789abcdef"
    names = {
        training_job_name("keel", "ml.train", run_id),
        training_job_name("keel", "ml.train", run_id),
        training_job_name("a very long prefix_with.odd/characters" * 3, "ml.some_module.with.dots", run_id),
        training_job_name("--", "..", run_id),
    }
    assert len(names) == 4
    for name in names:
        assert pattern.match(name) and len(name) <= 63, name
        assert "-0123abcd-" in name
    assert training_job_name("keel", "ml.train", run_id, suffix="abc123") == "keel-ml-train-0123abcd-abc123"


def test_environment_limits_are_checked_before_any_request():
    check_environment({"DAGSTER_PIPES_CONTEXT": "x" * 512})
    with pytest.raises(ValueError, match="environment variable HUGE is 513 characters; SageMaker allows 512"):
        check_environment({"HUGE": "x" * 513})
    with pytest.raises(ValueError, match="name '1BAD' is not valid"):
        check_environment({"1BAD": "x"})


def test_a_training_job_runs_the_entry_point_and_delivers_its_output(aws, s3, container, training_inputs):
    """One entry point call: the request body (fixture), the channels, Pipes through S3, the unpacked output."""
    resources = deployments.resources_for(environ=aws_settings(aws))
    storage, compute = resources["storage"], resources["compute"]
    inputs = {
        "features": storage.uri("training_set", "features.parquet"),
        "state": storage.uri("training_set", "feature_state.json"),
        "config": storage.uri("models", "candidates", "run.config.json"),
    }
    for name, uri in inputs.items():
        s3.upload_file(training_inputs[name], BUCKET, uri.removeprefix(f"s3://{BUCKET}/"))
    out = storage.uri("models", "candidates", "run")
    # S3Prefix also delivers this sibling into the `features` channel; the entry point must still read the named file.
    s3.put_object(Bucket=BUCKET, Key="keel/training_set/features.parquet.bak", Body=b"not parquet")
    reports = []

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> dg.MaterializeResult:
        result = compute.run(context, "ml.train", inputs, {"out": out}).get_materialize_result()
        reports.append(result.metadata["report"].value)
        return result

    instance = dg.DagsterInstance.ephemeral()
    outcome = dg.materialize([trained], resources={"compute": compute}, instance=instance)
    assert outcome.success
    (proc,) = container.runs
    assert proc.returncode == 0, proc.stderr

    (request,) = container.requests
    assert normalised(request, outcome.run_id) == fixture("sagemaker_create_training_job.json", request, outcome.run_id)
    environment = request["Environment"]
    assert all(len(value) <= 512 for value in environment.values())
    context_pointer = decode_pipes_param(environment["DAGSTER_PIPES_CONTEXT"])
    assert set(context_pointer) == {"bucket", "key"} and context_pointer["bucket"] == BUCKET  # a pointer only
    messages = decode_pipes_param(environment["DAGSTER_PIPES_MESSAGES"])
    job = request["TrainingJobName"]
    assert messages["key_prefix"].startswith(f"keel/pipes/{job}/messages/")
    # The entry point wrote its messages to S3 and Dagster read them from there.
    assert f"{messages['key_prefix']}/1.json" in s3_keys(s3, f"keel/pipes/{job}/")
    (report,) = reports
    assert report["artifact_uri"] == out and report["inputs"] == inputs
    assert 0.83 < report["metrics"]["roc_auc"] < 0.87
    logs = "\n".join(e.user_message for e in instance.all_logs(outcome.run_id))
    assert "holdout ROC AUC" in logs  # a log line of the entry point, through S3
    assert f"SageMaker training job {job}: Completed" in logs
    # The artifact is where the asset asked for it, complete, unpacked from model.tar.gz.
    artifact = s3_keys(s3, "keel/models/candidates/run/")
    assert {f"keel/models/candidates/run/{name}" for name in report["files"]} <= set(artifact)
    assert "keel/models/candidates/run/manifest.json" in artifact
    assert s3_keys(s3, f"keel/sagemaker-jobs/{job}/") == [f"keel/sagemaker-jobs/{job}/output/model.tar.gz"]
    metadata = outcome.asset_materializations_for_node("trained")[0].metadata
    assert metadata["sagemaker_training_job"].value == job


def test_the_training_flow_materializes_on_the_aws_deployment(aws, s3, container, project, instance):
    """training_set -> candidate (a SageMaker job) -> gate -> registry, with every artifact on S3."""
    resources = deployments.resources_for(root=project, environ=aws_settings(aws))
    assert resources["storage"].root == f"s3://{BUCKET}/keel"
    result = train(project, instance, from_raw_data=True, **resources)
    assert result.success, [proc.stderr for proc in container.runs]

    (request,) = container.requests
    assert request["Environment"]["KEEL_PIPES_TRANSPORT"] == "s3"
    event = instance.get_latest_materialization_event(candidate_model.key)
    candidate = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert candidate["artifact"] == f"s3://{BUCKET}/keel/models/candidates/{result.run_id}"
    logs = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
    assert f"SageMaker training job {request['TrainingJobName']} completed" in logs
    assert "lightgbm: holdout ROC AUC" in logs  # the entry point's log line, back through S3
    assert 0.83 < candidate["roc_auc"] < 0.87
    assert candidate["plots"].count("data:image/png;base64,") == 4  # read back from the S3 artifact
    run = result.run_id  # each run's training files under its own id (resources/layout.py)
    assert {f"training_sets/{run}/holdout_rows.parquet", f"features/{run}/features.parquet"} <= {
        key.removeprefix("keel/") for key in s3_keys(s3, "keel/")
    }
    registry = resources["registry"]
    assert registry.versions(MODEL) == [1] and registry.alias_version(MODEL, "champion") == 1
    assert registry.version_info(MODEL, 1)["tags"]["manifest_sha256"] == candidate["manifest_sha256"]
    registered = instance.get_latest_materialization_event(registered_model.key).asset_materialization
    assert registered.metadata["moved_to"].value == "v1"
    # The version's model card is on S3 and a SageMaker model card; the training cost is SageMaker's billed time.
    card = boto3.client("sagemaker").describe_model_card(ModelCardName="telco-churn-v1")
    assert registered.metadata["sagemaker_model_card_arn"].value == card["ModelCardArn"]
    assert json.loads(card["Content"])["model_overview"]["model_version"] == 1
    assert f"keel/cards/{MODEL}/v1.html" in s3_keys(s3, "keel/cards/")
    assert candidate["cost_details"]["billable_seconds"] > 0 and candidate["cost_unit"] == "USD"


def described(status: str, secondary: str, reason: str | None = None) -> dict[str, Any]:
    """A DescribeTrainingJob response with every member botocore's output shape requires."""
    response = {
        "TrainingJobName": "stubbed",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/stubbed",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/nothing/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    }
    if reason:
        response["FailureReason"] = reason
    return response


@pytest.fixture
def stubbed(aws, monkeypatch) -> Stubber:
    """A SageMaker client whose answers the test scripts; S3 stays moto's."""
    client = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(client)
    monkeypatch.setattr(SageMakerCompute, "sagemaker_client", lambda self: client)
    monkeypatch.setattr(cloud_job, "_wait", lambda seconds: None)
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    with stubber:
        yield stubber


@pytest.mark.parametrize(
    ("status", "secondary", "reason"),
    [
        ("Failed", "Failed", "AlgorithmError: ExecuteUserScriptError: exit code 1"),
        ("Stopped", "MaxRuntimeExceeded", "Training job reached its MaxRuntimeInSeconds"),
    ],
)
def test_a_failed_or_stopped_job_fails_the_run_and_registers_nothing(
    aws, s3, stubbed, project, instance, status, secondary, reason
):
    stubbed.add_response("create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:::training-job/x"}, None)
    stubbed.add_response("describe_training_job", described("InProgress", "Starting"), {"TrainingJobName": ANY})
    stubbed.add_response("describe_training_job", described("InProgress", "Training"), {"TrainingJobName": ANY})
    stubbed.add_response("describe_training_job", described(status, secondary, reason), {"TrainingJobName": ANY})
    resources = deployments.resources_for(root=project, environ=aws_settings(aws))
    result = train(project, instance, from_raw_data=True, **resources)
    assert not result.success
    stubbed.assert_no_pending_responses()
    error = result.failure_data_for_node("candidate_model").error
    assert f"ended {status}: {reason}" in error.to_string()
    logs = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
    assert "InProgress (Starting)" in logs and "InProgress (Training)" in logs  # each transition, once
    assert logs.count("InProgress (Training)") == 1
    assert resources["registry"].versions(MODEL) == []
    assert instance.get_latest_materialization_event(registered_model.key) is None


@pytest.mark.parametrize("interruption", [dg.DagsterExecutionInterruptedError, KeyboardInterrupt])
def test_an_interrupted_run_stops_the_training_job(aws, s3, stubbed, monkeypatch, interruption):
    stubbed.add_response("create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:::training-job/x"}, None)
    stubbed.add_response("describe_training_job", described("InProgress", "Training"), {"TrainingJobName": ANY})
    stubbed.add_response("stop_training_job", {}, {"TrainingJobName": ANY})

    def interrupted(seconds: float) -> None:
        raise interruption()

    monkeypatch.setattr(cloud_job, "_wait", interrupted)
    compute = deployments.resources_for(environ=aws_settings(aws))["compute"]
    uri = f"s3://{BUCKET}/keel/in.json"
    s3.put_object(Bucket=BUCKET, Key="keel/in.json", Body=b"{}")

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        compute.run(context, "ml.train", {"config": uri}, {"out": f"s3://{BUCKET}/keel/out"})

    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(interruption):
        dg.materialize([trained], resources={"compute": compute}, instance=instance)
    stubbed.assert_no_pending_responses()  # StopTrainingJob was called
    logs = "\n".join(e.user_message for e in instance.all_logs(instance.get_runs()[0].run_id))
    assert "run interrupted: stopping SageMaker training job keel-ml-train-" in logs


def test_a_folder_input_is_channelled_as_a_folder_and_leaves_its_siblings_out(aws, s3):
    compute = deployments.resources_for(environ=aws_settings(aws))["compute"]
    s3.put_object(Bucket=BUCKET, Key="keel/models/candidates/r1/manifest.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="keel/models/candidates/r1.config.json", Body=b"{}")
    inputs = {
        "model": f"s3://{BUCKET}/keel/models/candidates/r1",
        "config": f"s3://{BUCKET}/keel/models/candidates/r1.config.json",
    }
    request = compute.training_job_request("job", "ml.score", inputs, {"predictions": f"s3://{BUCKET}/p.parquet"}, s3)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {
        "model": f"s3://{BUCKET}/keel/models/candidates/r1/",
        "config": f"s3://{BUCKET}/keel/models/candidates/r1.config.json",
    }
    assert request["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python", "-m", "ml.score"]


def test_a_missing_input_is_named_before_any_job_starts(aws, s3):
    compute = deployments.resources_for(environ=aws_settings(aws))["compute"]
    missing = f"s3://{BUCKET}/keel/training_set/features.parquet"
    with pytest.raises(FileNotFoundError, match=rf"input 'features': nothing at {missing}"):
        compute.training_job_request("job", "ml.train", {"features": missing}, {"out": f"s3://{BUCKET}/o"}, s3)


def test_spot_training_sets_a_wait_limit(aws):
    settings = aws_settings(aws, KEEL_SAGEMAKER_SPOT="true", KEEL_SAGEMAKER_MAX_RUNTIME_SECONDS="600")
    compute = deployments.resources_for(environ=settings)["compute"]
    request = compute.training_job_request("job", "ml.train", {}, {"out": f"s3://{BUCKET}/o"}, None)
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 1200}


def test_local_inputs_are_refused_with_the_input_named(aws, s3, container, tmp_path):
    compute = deployments.resources_for(environ=aws_settings(aws))["compute"]

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> None:
        compute.run(context, "ml.train", {"features": str(tmp_path / "f.parquet")}, {"out": f"s3://{BUCKET}/o"})

    outcome = dg.materialize([trained], resources={"compute": compute}, raise_on_error=False)
    message = outcome.failure_data_for_node("trained").error.to_string()
    assert "input 'features'" in message and "is not an s3:// URI" in message
    assert container.requests == []


def test_a_day_is_scored_as_a_sagemaker_job(aws, s3, container, trained_project):
    """nightly_scoring on KEEL_DEPLOYMENT=aws: the day's file on S3, `python -m ml.score` as a training job."""
    resources = deployments.resources_for(root=trained_project, environ=aws_settings(aws))
    rows_uri, _ = cloud_day(trained_project, f"s3://{BUCKET}/daily")
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        result = score_day(trained_project, instance, resources)
        assert result.success, [proc.stderr for proc in container.runs]
        assert len(container.runs) == SHARDS and all(proc.returncode == 0 for proc in container.runs)
        scored = assert_scored_like_local(result, instance, resources, rows_uri)
        logs = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
        drift = latest(instance, "drift_report")

    (request,) = container.requests
    assert normalised(request, result.run_id) == fixture("sagemaker_score_training_job.json", request, result.run_id)
    job = request["TrainingJobName"]
    assert job.startswith(f"keel-ml-score-{result.run_id[:8]}-")
    # The model went in as v1's published folder (keyed by its manifest), the day's rows as a file channel of their own.
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels["model"] == f"s3://{BUCKET}/keel/models/registered/{MODEL}/{scored['model_manifest_sha256']}/"
    assert channels["rows"] == rows_uri
    # One job on 3 instances, each reading the whole day (FullyReplicated) and writing its part to S3 itself.
    assert request["ResourceConfig"]["InstanceCount"] == SHARDS
    distribution = {c["DataSource"]["S3DataSource"]["S3DataDistributionType"] for c in request["InputDataConfig"]}
    assert distribution == {"FullyReplicated"} and request["Environment"]["KEEL_SAGEMAKER_DIRECT_OUTPUTS"] == "1"
    # The entry point's messages came back through S3, its log lines are in the run.
    messages = decode_pipes_param(request["Environment"]["DAGSTER_PIPES_MESSAGES"])
    assert f"{messages['key_prefix']}/1.json" in s3_keys(s3, f"keel/pipes/{job}/")
    assert (
        f"scoring {rows_uri} with the model at s3://{BUCKET}/keel/models/registered/{MODEL}/{scored['model_manifest_sha256']}"
        in logs
    )
    attempt = f"keel/predictions/day={DAY}/run-{result.run_id}"
    assert f"shard 0 of 3 into s3://{BUCKET}/{attempt}" in logs  # only algo-1 speaks Pipes
    assert "shard 1 of 3" not in logs and "shard 2 of 3" not in logs
    assert f"SageMaker training job {job}: Completed" in logs
    parts = [
        f"{attempt}/part-0000{i}-of-00003{end}"
        for i in range(SHARDS)
        for end in (".capture.parquet", ".json", ".parquet")
    ]
    assert s3_keys(s3, "keel/predictions/") == sorted(
        [
            f"keel/predictions/{DAY}.config.json",
            f"keel/predictions/day={DAY}/manifest.json",
            f"{attempt}/capture.parquet",
            *parts,
        ]
    )
    assert drift["verdict"] == "no drift" and drift["report"] == f"s3://{BUCKET}/keel/monitoring/drift/{DAY}.html"
    drift_html, script, importance = s3_keys(
        s3, "keel/monitoring/"
    )  # the day's report, and the model's importance kept once per version
    assert drift_html == f"keel/monitoring/drift/{DAY}.html"
    assert re.fullmatch(
        r"keel/monitoring/drift/evidently-[\w.]+\.js", script
    )  # Evidently's script, shared by the pages
    assert re.fullmatch(r"keel/monitoring/importance/telco_churn/[0-9a-f]{64}\.json", importance)


def test_a_failing_instance_fails_the_day_and_the_previous_day_stays(aws, s3, container, trained_project):
    """Scoring the day again with algo-2 failing: the job fails, and the day's manifest and parts stay."""
    from ml import io
    from ml.predictions import read_predictions

    resources = deployments.resources_for(root=trained_project, environ=aws_settings(aws))
    cloud_day(trained_project, f"s3://{BUCKET}/daily")
    day = f"s3://{BUCKET}/keel/predictions/day={DAY}"
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        assert score_day(trained_project, instance, resources).success
        before, scores = io.read_json(f"{day}/manifest.json"), read_predictions(day)
        container.fail_host = "algo-2"  # shard 1
        failed = score_day(trained_project, instance, resources)
        assert not failed.success
        assert (
            "instance algo-2 exited with status 1"
            in failed.failure_data_for_node("batch_predictions").error.to_string()
        )
        assert io.read_json(f"{day}/manifest.json") == before
        assert read_predictions(day).equals(scores)
