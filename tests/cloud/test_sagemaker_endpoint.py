"""A rollout on a SageMaker endpoint, against moto: create, shift weights back, a new version, promotion.

moto 5.2.5 serves CreateModel, CreateEndpointConfig, CreateEndpoint, DescribeEndpoint(Config) and
UpdateEndpointWeightsAndCapacities; it has no UpdateEndpoint, so that one call is answered by a
botocore before-call hook (its request body is still checked against the fixture).
"""

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from serving.cloud import ServedModel
from serving.cloud.sagemaker_endpoint import SageMakerEndpoint
from serving.state import RolloutState

FIXTURES = Path(__file__).parent / "fixtures"
ROLE = "arn:aws:iam::123456789012:role/keel-sagemaker-endpoint"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/keel-serving:test"
V1, V2, V3 = (
    ServedModel(
        n,
        f"{n}" * 64,
        f"s3://keel-artifacts/keel/models/registered/telco_churn/{n}{'0' * 63}",
        "s3://keel-artifacts/keel",
    )
    for n in (1, 2, 3)
)
CANARY = "canary"


def state(mode: str, version: int | None = None, percent: float = 0.0) -> RolloutState:
    return RolloutState(mode=mode, challenger_version=version, canary_percent=percent, reason="test")


@pytest.fixture
def calls(aws, monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """Every SageMaker call the endpoint makes, with its parameters; UpdateEndpoint answered here."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    real = SageMakerEndpoint.client

    def client(self):
        made = real(self)

        def record(params, model, **_):
            if not model.name.startswith("Describe"):
                recorded.append((model.name, json.loads(json.dumps(params, default=str))))

        def update_endpoint(params, **_):
            params = json.loads(params["body"])  # the serialized request
            moto = boto3.client("sagemaker", region_name="us-east-1")
            moto.delete_endpoint(EndpointName=params["EndpointName"])  # what UpdateEndpoint ends with
            moto.create_endpoint(EndpointName=params["EndpointName"], EndpointConfigName=params["EndpointConfigName"])
            return (
                SimpleNamespace(status_code=200),
                {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/keel"},
            )

        made.meta.events.register("provide-client-params.sagemaker.*", record)
        made.meta.events.register("before-call.sagemaker.UpdateEndpoint", update_endpoint)
        return made

    monkeypatch.setattr(SageMakerEndpoint, "client", client)
    return recorded


def weights(endpoint: SageMakerEndpoint) -> dict[str, float]:
    client = boto3.client("sagemaker", region_name="us-east-1")
    described = client.describe_endpoint(EndpointName=endpoint.endpoint_name)
    found = {v["VariantName"]: v.get("CurrentWeight", v.get("DesiredWeight")) for v in described["ProductionVariants"]}
    if not any(w is not None for w in found.values()):  # a new endpoint: its configuration's weights
        config = client.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        found = {v["VariantName"]: v["InitialVariantWeight"] for v in config["ProductionVariants"]}
    return found


def test_a_canary_is_weighted_rolled_back_replaced_and_promoted(calls):
    endpoint = SageMakerEndpoint(region="us-east-1", role_arn=ROLE, image_uri=IMAGE)

    first = endpoint.apply(state(CANARY, 2, 20.0), V1, V2)
    assert first["endpoint_call"] == "CreateEndpoint"
    assert weights(endpoint) == {"v1": 0.8, "v2": 0.2}

    back = endpoint.apply(state("off"), V1, None)  # a rollback: the same fleet, the weights moved
    assert back["endpoint_call"] == "UpdateEndpointWeightsAndCapacities"
    assert weights(endpoint) == {"v1": 1.0, "v2": 0.0}

    again = endpoint.apply(state(CANARY, 3, 10.0), V1, V3)  # a version the endpoint lacks: a new configuration
    assert again["endpoint_call"] == "UpdateEndpoint"
    assert weights(endpoint) == {"v1": 0.9, "v3": 0.1}

    promoted = endpoint.apply(state("off"), V3, None)
    assert promoted["endpoint_call"] == "UpdateEndpointWeightsAndCapacities"
    assert weights(endpoint) == {"v1": 0.0, "v3": 1.0}

    shadow = endpoint.apply(state("shadow", 2), V3, V2)
    assert shadow["endpoint_call"] == "UpdateEndpoint"

    path = FIXTURES / "sagemaker_endpoint_rollout.json"
    if os.environ.get("KEEL_UPDATE_FIXTURES") == "1":
        path.write_text(json.dumps(calls, indent=2, sort_keys=True) + "\n")
    assert calls == [tuple(call) for call in json.loads(path.read_text())]


def test_the_aws_deployment_applies_rollouts_to_its_sagemaker_endpoint(aws):
    from orchestration.deployments import resources_for

    environ = {
        **aws,
        "KEEL_S3_ROOT": "s3://keel-artifacts/keel",
        "KEEL_SAGEMAKER_ROLE_ARN": ROLE,
        "KEEL_SAGEMAKER_IMAGE_URI": IMAGE,
        "KEEL_SAGEMAKER_ENDPOINT_NAME": "churn",
    }
    endpoint = resources_for("aws", environ=environ)["endpoint"]
    assert isinstance(endpoint, SageMakerEndpoint)
    assert (endpoint.endpoint_name, endpoint.role_arn, endpoint.image_uri) == ("churn", ROLE, None)
    with pytest.raises(ValueError, match="KEEL_SERVING_IMAGE_URI"):  # the batch image cannot serve
        endpoint.apply(state("off"), V1, None)
    serving_image = {**environ, "KEEL_SERVING_IMAGE_URI": IMAGE.replace(":test", ":serve")}
    assert resources_for("aws", environ=serving_image)["endpoint"].image_uri.endswith(":serve")
