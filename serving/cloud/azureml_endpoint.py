"""A rollout on an Azure ML managed online endpoint (KEEL_DEPLOYMENT=azure), over Azure Resource Manager.

Each registered version is a deployment of the endpoint, named `v<n>`, running the project's serving
image (an environment version per image) and told which verified artifact to load by
KEEL_MODEL_URI / KEEL_MODEL_SHA256. The endpoint's `traffic` gives each deployment its share of the
requests; a shadow is `mirrorTraffic` (Azure ML copies at most 50 % of the requests to it and drops
its answers). A rollback or a promotion is one update of `traffic`; the deployment that then serves
nothing is deleted, which frees its instances.

The calls are the ARM REST API (api-version 2024-04-01) through azure-core with a bearer token for
the Resource Manager (DefaultAzureCredential, as resources/azureml.py's clients use); ARM's
long-running operations are awaited by reading the resource until its provisioningState is final.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from pydantic import Field

from resources.azureml import PUBLIC_RESOURCE_MANAGER
from serving.cloud import Endpoint, ServedModel
from serving.state import RolloutState

API_VERSION = "2024-04-01"
MAX_MIRROR = 50  # Azure ML's cap on mirrored traffic, percent
FINAL = ("Succeeded", "Failed", "Canceled")


class AzureMLEndpointError(RuntimeError):
    """Azure ML refused a call or a deployment failed; the message names the resource and Azure's reason."""


class AzureMLEndpoint(Endpoint):
    """The project's Azure ML managed online endpoint."""

    subscription_id: str = Field(description="Azure subscription id of the workspace.")
    resource_group: str = Field(description="Resource group of the workspace.")
    workspace: str = Field(description="Azure ML workspace name.")
    location: str | None = Field(default=None, description="Azure region of the workspace, e.g. westeurope.")
    image: str | None = Field(default=None, description="Container image of the serving endpoint (e.g. an ACR URI).")
    endpoint_name: str = Field(default="keel", description="The online endpoint's name (unique in the region).")
    instance_type: str = Field(default="Standard_DS3_v2", description="VM size of each deployment.")
    instance_count: int = Field(default=1, ge=1, description="Instances per deployment.")
    shadow_percent: int = Field(default=MAX_MIRROR, ge=1, le=MAX_MIRROR, description="Requests mirrored to a shadow.")
    resource_manager_url: str = Field(default=PUBLIC_RESOURCE_MANAGER, description="ARM endpoint (a fake in tests).")
    poll_interval_seconds: float = Field(default=10.0, gt=0, description="Seconds between provisioning reads.")
    timeout_seconds: float = Field(default=1800, gt=0, description="How long a deployment may take.")

    def credential(self) -> Any:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def client(self) -> Any:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy

        scope = self.resource_manager_url.rstrip("/") + "/.default"
        policies = [RetryPolicy(), BearerTokenCredentialPolicy(self.credential(), scope)]
        return PipelineClient(base_url=self.resource_manager_url, policies=policies)

    @property
    def endpoint_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{self.workspace}/onlineEndpoints/{self.endpoint_name}"
        )

    def _call(self, client: Any, method: str, path: str, body: dict | None = None) -> dict[str, Any] | None:
        from azure.core.rest import HttpRequest

        url = f"{self.resource_manager_url.rstrip('/')}{path}?api-version={API_VERSION}"
        response = client.send_request(HttpRequest(method, url, json=body))
        if method == "GET" and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise AzureMLEndpointError(
                f"Azure ML {method} {path} answered {response.status_code}: {response.text()[:300]}"
            )
        return response.json() if response.content else {}

    def _provisioned(self, client: Any, path: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            document = self._call(client, "GET", path) or {}
            state = document.get("properties", {}).get("provisioningState")
            if state in FINAL:
                if state != "Succeeded":
                    raise AzureMLEndpointError(f"Azure ML {path} ended {state}: {document['properties'].get('error')}")
                return document
            if time.monotonic() > deadline:
                raise AzureMLEndpointError(f"Azure ML {path} still {state} after {self.timeout_seconds:g} s")
            time.sleep(self.poll_interval_seconds)

    def _put_endpoint(self, client: Any, traffic: dict[str, int], mirror: dict[str, int]) -> None:
        body = {
            "location": self.location,
            "identity": {"type": "SystemAssigned"},  # reads the published models in the artifact container
            "properties": {"authMode": "Key", "traffic": traffic, "mirrorTraffic": mirror},
        }
        self._call(client, "PUT", self.endpoint_path, body)
        self._provisioned(client, self.endpoint_path)

    def _environment(self, client: Any) -> str:
        name = f"{self.endpoint_name}-serving"
        version = hashlib.sha256(self.image.encode()).hexdigest()[:12]  # one environment version per image
        path = self.endpoint_path.split("/onlineEndpoints/")[0] + f"/environments/{name}/versions/{version}"
        if self._call(client, "GET", path) is None:
            body = {
                "properties": {
                    "image": self.image,
                    "inferenceConfig": {
                        "livenessRoute": {"path": "/health", "port": 8080},
                        "readinessRoute": {"path": "/health", "port": 8080},
                        "scoringRoute": {"path": "/predict", "port": 8080},
                    },
                }
            }
            self._call(client, "PUT", path, body)
        return path.lstrip("/")

    def _deploy(self, client: Any, model: ServedModel) -> None:
        path = f"{self.endpoint_path}/deployments/v{model.version}"
        existing = self._call(client, "GET", path)
        if existing and existing["properties"].get("environmentVariables", {}).get("KEEL_MODEL_SHA256") == (
            model.manifest_sha256
        ):
            return
        body = {
            "location": self.location,
            "sku": {"name": "Default", "capacity": self.instance_count},
            "properties": {
                "endpointComputeType": "Managed",
                "instanceType": self.instance_type,
                "environmentId": self._environment(client),
                "environmentVariables": model.environment(),
            },
        }
        self._call(client, "PUT", path, body)
        self._provisioned(client, path)

    def apply(self, state: RolloutState, champion: ServedModel, challenger: ServedModel | None) -> dict[str, Any]:
        missing = [
            v
            for v, value in (("KEEL_AZUREML_LOCATION", self.location), ("KEEL_SERVING_IMAGE_URI", self.image))
            if not value
        ]
        if missing:
            raise AzureMLEndpointError(f"the Azure ML online endpoint needs {' and '.join(missing)} (docs/serving.md)")
        client = self.client()
        traffic, mirror = {f"v{champion.version}": 100}, {}
        wanted = [champion]
        if state.mode != "off" and challenger is not None:
            wanted.append(challenger)
            if state.mode == "canary":
                share = min(99, max(1, round(state.canary_percent)))  # Azure ML splits in whole percent
                traffic = {f"v{champion.version}": 100 - share, f"v{challenger.version}": share}
            else:
                mirror = {f"v{challenger.version}": self.shadow_percent}
        calls = []
        if self._call(client, "GET", self.endpoint_path) is None:
            self._put_endpoint(client, {}, {})  # an endpoint exists before its deployments
            calls.append("create endpoint")
        for model in wanted:
            self._deploy(client, model)
        current = self._call(client, "GET", self.endpoint_path) or {}
        properties = current.get("properties", {})
        if properties.get("traffic") != traffic or (properties.get("mirrorTraffic") or {}) != mirror:
            self._put_endpoint(client, traffic, mirror)
            calls.append("traffic")
        listing = self._call(client, "GET", f"{self.endpoint_path}/deployments") or {}
        for deployment in listing.get("value", []):
            if deployment["name"] not in traffic and deployment["name"] not in mirror:  # serves nothing now
                self._call(client, "DELETE", f"{self.endpoint_path}/deployments/{deployment['name']}")
                calls.append(f"delete {deployment['name']}")
        return {
            "endpoint": f"azureml:{self.endpoint_name}",
            "endpoint_call": ", ".join(calls) or "none (already so)",
            "endpoint_weights": json.dumps({"traffic": traffic, "mirror": mirror}, sort_keys=True),
        }
