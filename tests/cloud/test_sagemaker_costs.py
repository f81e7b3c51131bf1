"""SageMaker's side of costs and cards on moto: BillableTimeInSeconds x InstanceCount x price, and a model card."""

import json
from typing import Any

import boto3
import dagster as dg
import pytest

from ml.cost import run_cost
from ml.model_card import sagemaker_content
from ml.params import load_params
from orchestration import deployments
from resources.compute import ComputeBackend
from resources.model_cards import publish_sagemaker_card, sagemaker_card_name
from tests.cloud.sagemaker_fakes import SPOT_BILLED
from tests.cloud.test_sagemaker import BUCKET, aws_settings, container, s3  # noqa: F401 - fixtures
from tests.ml.test_model_card import card


def test_a_spot_job_costs_its_billable_seconds_on_every_instance(aws, s3, container, training_inputs):  # noqa: F811
    settings = aws_settings(
        aws,
        KEEL_SAGEMAKER_INSTANCE_TYPE="ml.m5.xlarge",
        KEEL_SAGEMAKER_INSTANCE_COUNT="2",
        KEEL_SAGEMAKER_SPOT="true",
    )
    resources = deployments.resources_for(environ=settings)
    storage, compute = resources["storage"], resources["compute"]
    inputs = {
        "features": storage.uri("training_set", "features.parquet"),
        "state": storage.uri("training_set", "feature_state.json"),
        "config": storage.uri("models", "candidates", "run.config.json"),
    }
    for name, uri in inputs.items():
        s3.upload_file(training_inputs[name], BUCKET, uri.removeprefix(f"s3://{BUCKET}/"))
    seen: list[dict[str, Any]] = []

    @dg.asset
    def trained(context: dg.AssetExecutionContext, compute: ComputeBackend) -> dg.MaterializeResult:
        result = compute.run(context, "ml.train", inputs, {"out": storage.uri("models", "candidates", "run")})
        metadata = result.get_materialize_result().metadata
        seen.append({"usage": metadata["job_usage"].value, "report": metadata["report"].value})
        return dg.MaterializeResult()

    assert dg.materialize([trained], resources={"compute": compute}, instance=dg.DagsterInstance.ephemeral()).success
    (request,) = container.requests
    described = container.attach(boto3.client("sagemaker")).describe_training_job(
        TrainingJobName=request["TrainingJobName"]
    )
    billable, trained_for = described["BillableTimeInSeconds"], described["TrainingTimeInSeconds"]
    assert billable == max(int(trained_for * SPOT_BILLED), 1)
    (run,) = seen
    assert run["usage"] == {
        "platform": "sagemaker",
        "instance_type": "ml.m5.xlarge",
        "instance_count": 2,
        "billable_seconds": billable,
        "training_seconds": trained_for,
    }
    cost = run_cost(run["report"]["usage"], run["usage"], load_params().costs)
    assert cost["amount"] == pytest.approx(billable * 2 * 0.23 / 3600)
    assert cost["spot_saving"] == pytest.approx(1 - billable / trained_for, abs=1e-4)
    assert cost["cpu_seconds"] > 0  # the entry point's own measure travels with it


def test_a_version_gets_a_sagemaker_model_card_updated_when_it_changes(aws):
    client = boto3.client("sagemaker")
    made = card(3)
    arn = publish_sagemaker_card(made, client)
    name = sagemaker_card_name("telco_churn", 3)
    assert name == "telco-churn-v3" and arn.endswith(f"model-card/{name}")
    stored = client.describe_model_card(ModelCardName=name)
    assert json.loads(stored["Content"]) == json.loads(json.dumps(sagemaker_content(made)))
    assert stored["ModelCardStatus"] == "Draft"
    moved = {**made, "model_overview": {**made["model_overview"], "model_description": "now champion"}}
    publish_sagemaker_card(moved, client)
    again = client.describe_model_card(ModelCardName=name)
    assert json.loads(again["Content"])["model_overview"]["model_description"] == "now champion"
