"""A rollout on a SageMaker real-time endpoint (KEEL_DEPLOYMENT=aws), with plain boto3.

Each registered version is a SageMaker model (CreateModel: the project's image, told which verified
artifact to load by KEEL_MODEL_URI / KEEL_MODEL_SHA256). The endpoint has one production variant per
version, named `v<n>`, weighted by the share of requests it answers; a shadow is a
ShadowProductionVariant (it scores a copy of every request, its answers are discarded).

Shifting traffic between versions the endpoint already has — a rollback, a promotion — is one
UpdateEndpointWeightsAndCapacities (no instance is replaced, so it takes effect in seconds). A new
version needs a new endpoint configuration: CreateEndpointConfig, then CreateEndpoint the first time
and UpdateEndpoint after (SageMaker replaces the fleet without downtime).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
from botocore.exceptions import ClientError
from pydantic import Field

from serving.cloud import Endpoint, ServedModel, require_image
from serving.state import RolloutState


def variant(model: ServedModel) -> str:
    return f"v{model.version}"


class SageMakerEndpoint(Endpoint):
    """The project's SageMaker real-time endpoint."""

    region: str = Field(description="AWS region of the endpoint.")
    role_arn: str = Field(description="Execution role the endpoint's containers run as (reads the models in S3).")
    image_uri: str | None = Field(default=None, description="ECR URI of the project's serving image.")
    endpoint_name: str = Field(default="keel", description="The endpoint's name.")
    instance_type: str = Field(default="ml.m5.large", description="Instance type of each variant.")
    instance_count: int = Field(default=1, ge=1, description="Instances per variant.")
    endpoint_url: str | None = Field(default=None, description="SageMaker API endpoint (AWS_ENDPOINT_URL applies).")

    def client(self) -> Any:
        return boto3.client("sagemaker", region_name=self.region, endpoint_url=self.endpoint_url)

    def model_name(self, model: ServedModel) -> str:
        # Content-keyed like the published copy: a reused version number never finds an old model.
        return f"{self.endpoint_name}-v{model.version}-{model.manifest_sha256[:12]}"

    def _ensure_model(self, client: Any, model: ServedModel) -> str:
        name = self.model_name(model)
        try:
            client.describe_model(ModelName=name)
        except ClientError:
            client.create_model(
                ModelName=name,
                ExecutionRoleArn=self.role_arn,
                PrimaryContainer={
                    "Image": require_image(self.image_uri, "SageMaker"),
                    "Environment": model.environment(),
                },
            )
        return name

    def _variant(self, client: Any, model: ServedModel, weight: float) -> dict[str, Any]:
        return {
            "VariantName": variant(model),
            "ModelName": self._ensure_model(client, model),
            "InitialInstanceCount": self.instance_count,
            "InstanceType": self.instance_type,
            "InitialVariantWeight": weight,
        }

    def _current(self, client: Any) -> dict[str, Any] | None:
        try:
            endpoint = client.describe_endpoint(EndpointName=self.endpoint_name)
        except ClientError as error:
            if "Could not find endpoint" in str(error) or error.response["Error"]["Code"] == "ResourceNotFound":
                return None
            raise
        return client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])

    def apply(self, state: RolloutState, champion: ServedModel, challenger: ServedModel | None) -> dict[str, Any]:
        client = self.client()
        weights = {variant(champion): 1.0}
        if state.mode == "canary" and challenger is not None:
            share = state.canary_percent / 100.0
            weights = {variant(champion): 1.0 - share, variant(challenger): share}
        shadow = challenger if state.mode == "shadow" else None
        current = self._current(client)
        if current is not None:
            have = {v["VariantName"]: v["ModelName"] for v in current["ProductionVariants"]}
            have_shadow = {v["VariantName"] for v in current.get("ShadowProductionVariants", [])}
            models = {variant(champion): self.model_name(champion)}
            if state.mode == "canary" and challenger is not None:
                models[variant(challenger)] = self.model_name(challenger)
            wanted_shadow = {variant(shadow)} if shadow else set()
            if all(have.get(v) == m for v, m in models.items()) and have_shadow == wanted_shadow:
                desired = [{"VariantName": name, "DesiredWeight": weights.get(name, 0.0)} for name in sorted(have)]
                client.update_endpoint_weights_and_capacities(
                    EndpointName=self.endpoint_name, DesiredWeightsAndCapacities=desired
                )
                return self._report("UpdateEndpointWeightsAndCapacities", current["EndpointConfigName"], weights)
        by_name = {variant(champion): champion, **({variant(challenger): challenger} if challenger else {})}
        variants = [self._variant(client, by_name[name], weight) for name, weight in weights.items()]
        key = "-".join(f"{v['VariantName']}x{v['InitialVariantWeight']:g}" for v in variants)
        key += f"-shadow{shadow.version}" if shadow else ""
        config_name = f"{self.endpoint_name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        request: dict[str, Any] = {"EndpointConfigName": config_name, "ProductionVariants": variants}
        if shadow is not None:
            request["ShadowProductionVariants"] = [self._variant(client, shadow, 1.0)]
        try:
            client.create_endpoint_config(**request)
        except ClientError as error:
            if "already exist" not in str(error):  # the same split again: the same configuration
                raise
        if current is None:
            client.create_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=config_name)
            return self._report("CreateEndpoint", config_name, weights)
        client.update_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=config_name)
        return self._report("UpdateEndpoint", config_name, weights)

    def _report(self, call: str, config: str, weights: dict[str, float]) -> dict[str, Any]:
        return {
            "endpoint": f"sagemaker:{self.endpoint_name}",
            "endpoint_config": config,
            "endpoint_call": call,
            "endpoint_weights": json.dumps(weights, sort_keys=True),
        }
