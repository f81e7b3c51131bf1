"""KEEL_DEPLOYMENT picks compute and storage together; the assets stay the same objects.

Also: the aws deployment's storage (ArtifactStore and ml/io on s3://, through moto) behaves like the
local one, and a missing or malformed setting fails naming its variable.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from ml import io
from orchestration import deployments
from resources.compute import LocalCompute
from resources.sagemaker import SageMakerCompute
from resources.storage import ArtifactStore
from tests.conftest import REPO

AWS_REQUIRED = {
    "KEEL_S3_ROOT": "s3://keel-artifacts/keel",
    "KEEL_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/keel-sagemaker-execution",
    "KEEL_SAGEMAKER_IMAGE_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/keel-ml:1",
    "AWS_REGION": "eu-west-1",
}


def test_the_variable_swaps_compute_and_storage_together(tmp_path):
    local = deployments.resources_for(root=tmp_path, environ={})
    aws = deployments.resources_for(root=tmp_path, environ={"KEEL_DEPLOYMENT": "aws", **AWS_REQUIRED})
    assert isinstance(local["compute"], LocalCompute) and local["storage"].root == str(tmp_path / "var" / "storage")
    assert isinstance(aws["compute"], SageMakerCompute) and aws["storage"].root == "s3://keel-artifacts/keel"
    compute = aws["compute"]
    assert (compute.region, compute.role_arn, compute.image_uri) == (
        "eu-west-1",
        AWS_REQUIRED["KEEL_SAGEMAKER_ROLE_ARN"],
        AWS_REQUIRED["KEEL_SAGEMAKER_IMAGE_URI"],
    )
    assert compute.pipes_uri.startswith("s3://keel-artifacts/keel/") and not compute.spot
    # Settings, registry and DVC do not change with the deployment; the IO manager keeps records in its storage.
    assert local.keys() == aws.keys() == {"params", "dvc", "registry", "storage", "io_manager", "compute", "endpoint"}
    assert aws["registry"] == local["registry"] and aws["dvc"] == local["dvc"] and aws["params"] == local["params"]
    assert aws["io_manager"].storage == aws["storage"] and local["io_manager"].storage == local["storage"]


def test_optional_aws_settings_reach_the_backend():
    settings = {
        "KEEL_DEPLOYMENT": "aws",
        **AWS_REQUIRED,
        "KEEL_SAGEMAKER_INSTANCE_TYPE": "ml.c5.xlarge",
        "KEEL_SAGEMAKER_INSTANCE_COUNT": "2",
        "KEEL_SAGEMAKER_VOLUME_GB": "50",
        "KEEL_SAGEMAKER_SPOT": "yes",
        "KEEL_SAGEMAKER_MAX_RUNTIME_SECONDS": "7200",
        "KEEL_SAGEMAKER_MAX_WAIT_SECONDS": "9000",
        "KEEL_SAGEMAKER_POLL_SECONDS": "10",
        "KEEL_SAGEMAKER_ENDPOINT_URL": "https://api.sagemaker.eu-west-1.amazonaws.com",
    }
    compute = deployments.resources_for(environ=settings)["compute"]
    assert (compute.instance_type, compute.instance_count, compute.volume_size_gb) == ("ml.c5.xlarge", 2, 50)
    assert (compute.spot, compute.max_runtime_seconds, compute.max_wait_seconds) == (True, 7200, 9000)
    assert compute.poll_interval_seconds == 10 and compute.endpoint_url.endswith("amazonaws.com")


def test_the_code_location_loads_the_same_assets_on_every_deployment():
    """orchestration.definitions under KEEL_DEPLOYMENT=aws: other resources, identical asset graph."""
    script = (
        "import json; from orchestration.definitions import defs; g = defs.resolve_asset_graph(); "
        "print(json.dumps({'compute': type(defs.resources['compute']).__name__, "
        "'storage': defs.resources['storage'].root, "
        "'assets': sorted(k.to_user_string() for k in g.get_all_asset_keys()), "
        "'code_versions': sorted(str(g.get(k).code_version) for k in g.get_all_asset_keys())}))"
    )
    found = {}
    for name, extra in {"local": {}, "aws": AWS_REQUIRED}.items():
        env = {**os.environ, "KEEL_DEPLOYMENT": name, **extra}
        proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        found[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["local"]["compute"] == "LocalCompute" and found["aws"]["compute"] == "SageMakerCompute"
    assert found["aws"]["storage"] == "s3://keel-artifacts/keel"
    assert found["local"]["assets"] == found["aws"]["assets"]
    assert found["local"]["code_versions"] == found["aws"]["code_versions"]


def test_the_documented_aws_example_is_a_complete_deployment(tmp_path):
    lines = (REPO / "docs" / "examples" / "cloud" / "aws.env").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert not any("SECRET" in name or "KEY" in name for name in settings)  # credentials never go in the file
    resources = deployments.resources_for(root=tmp_path, environ=settings)
    assert isinstance(resources["compute"], SageMakerCompute)
    assert resources["storage"].root == settings["KEEL_S3_ROOT"]


def test_an_unknown_deployment_names_the_variable():
    with pytest.raises(deployments.DeploymentError, match=r"KEEL_DEPLOYMENT='mars' is not a known deployment.*aws"):
        deployments.resources_for(environ={"KEEL_DEPLOYMENT": "mars"})


@pytest.mark.parametrize("missing", sorted(AWS_REQUIRED))
def test_an_incomplete_aws_deployment_names_the_missing_variable(missing):
    settings = {"KEEL_DEPLOYMENT": "aws", **{k: v for k, v in AWS_REQUIRED.items() if k != missing}}
    with pytest.raises(
        deployments.DeploymentError, match=rf"KEEL_DEPLOYMENT=aws needs the environment variable {missing}"
    ):
        deployments.resources_for(environ=settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KEEL_S3_ROOT", "gs://keel/x", "KEEL_S3_ROOT='gs://keel/x' must be a s3:// URI"),
        (
            "KEEL_SAGEMAKER_SPOT",
            "sometimes",
            "KEEL_SAGEMAKER_SPOT='sometimes' is not valid: Input should be a valid boolean",
        ),
        (
            "KEEL_SAGEMAKER_INSTANCE_COUNT",
            "two",
            "KEEL_SAGEMAKER_INSTANCE_COUNT='two' is not valid: Input should be a valid integer",
        ),
    ],
)
def test_a_malformed_aws_setting_names_the_variable(name, value, message):
    with pytest.raises(deployments.DeploymentError, match=message):
        deployments.resources_for(environ={"KEEL_DEPLOYMENT": "aws", **AWS_REQUIRED, name: value})


def test_the_artifact_store_works_on_s3(bucket):
    """What the assets do with storage, on moto's S3 through s3fs (AWS_ENDPOINT_URL)."""
    store = ArtifactStore(root=f"s3://{bucket}/keel")
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5]})
    uri = store.uri("training_set", "features.parquet")
    io.write_parquet(frame, uri)
    assert uri == f"s3://{bucket}/keel/training_set/features.parquet" and io.exists(
        store.uri("training_set", "features.parquet")
    )
    pd.testing.assert_frame_equal(io.read_parquet(store.uri("training_set", "features.parquet")), frame)
    io.write_json({"n": 1}, store.uri("state.json"))
    io.write_json({"n": 2}, store.uri("state.json"))  # replaced in one PUT: no temporary objects left behind
    assert io.read_json(store.uri("state.json")) == {"n": 2}
    assert not io.exists(store.uri("missing.json"))
    for name in ("manifest.json", "plots/roc.png"):
        io.write_json({"file": name}, store.uri("models", "run1", name))
    io.write_json({"sibling": True}, store.uri("models", "run1.config.json"))
    with store.local_copy(store.uri("models", "run1")) as local:
        assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == [
            "manifest.json",
            "plots/roc.png",
        ]
    assert not local.exists()  # the downloaded copy is gone once the block ends
    import boto3

    keys = sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        "keel/models/run1.config.json",
        "keel/models/run1/manifest.json",
        "keel/models/run1/plots/roc.png",
        "keel/state.json",
        "keel/training_set/features.parquet",
    ]


def test_a_local_training_run_publishes_its_artifact_to_s3(bucket, training_inputs, tmp_path):
    """ml.train by hand, outputs on S3: the manifest is written, and readable like the local artifact."""
    from tests.ml.test_train import train_cli

    out = f"s3://{bucket}/keel/models/by-hand"
    proc = train_cli({k: training_inputs[k] for k in ("features", "state", "config")}, out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["artifact_uri"] == out
    with ArtifactStore(root=f"s3://{bucket}/keel").local_copy(out) as local:
        manifest = json.loads((local / "manifest.json").read_text())
    assert set(manifest["files"]) == set(report["files"])
