"""A rollout on a Vertex AI endpoint (KEEL_DEPLOYMENT=gcp), over the REST API with google-auth.

Each registered version is a Vertex model (`models:upload`: the project's serving image, told which
verified artifact to load by KEEL_MODEL_URI / KEEL_MODEL_SHA256). A canary is `deployModel` of the
challenger with its share in `trafficSplit`; shifting traffic between deployed models (a rollback, a
promotion) is one PATCH of the endpoint's `trafficSplit`, and the model that no longer serves is then
`undeployModel`-ed. Vertex AI endpoints cannot mirror traffic, so a shadow is refused here.
The REST session, its error messages and the endpoint check are resources/vertex.py's.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import Field

from resources.vertex import CLOUD_PLATFORM_SCOPE, VertexAPI, check_endpoint
from serving.cloud import Endpoint, ServedModel, require_image
from serving.state import RolloutState


class VertexEndpointError(RuntimeError):
    """The rollout cannot be applied to the Vertex AI endpoint; the message says why."""


class VertexEndpoint(Endpoint):
    """The project's Vertex AI online prediction endpoint."""

    project: str = Field(description="Google Cloud project ID of the endpoint.")
    location: str = Field(description="Vertex AI region, e.g. europe-west4.")
    image_uri: str | None = Field(default=None, description="Artifact Registry URI of the project's serving image.")
    endpoint_id: str = Field(default="keel", description="The endpoint's ID (created on the first rollout).")
    machine_type: str = Field(default="n1-standard-2", description="Machine type of each deployed model.")
    min_replicas: int = Field(default=1, ge=1, description="Replicas of each deployed model.")
    api_endpoint: str | None = Field(default=None, description="Vertex AI API endpoint (a loopback fake in tests).")
    operation_timeout_seconds: float = Field(default=1800, gt=0, description="How long to wait for a deployment.")

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def endpoint_name(self) -> str:
        return f"{self.parent}/endpoints/{self.endpoint_id}"

    def credentials(self) -> Any:
        import google.auth

        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return credentials

    def api(self) -> VertexAPI:
        from google.auth.transport.requests import AuthorizedSession

        url = check_endpoint(self.api_endpoint or f"https://{self.location}-aiplatform.googleapis.com")
        return VertexAPI(AuthorizedSession(self.credentials()), url)

    def _wait(self, api: VertexAPI, operation: dict[str, Any]) -> dict[str, Any]:
        """A long-running operation's response, once done (its error as VertexEndpointError)."""
        deadline = time.monotonic() + self.operation_timeout_seconds
        while not operation.get("done"):
            if time.monotonic() > deadline:
                raise VertexEndpointError(f"Vertex AI operation {operation['name']} not done after the timeout")
            time.sleep(0.2 if self.api_endpoint else 5)
            operation = api.call("GET", f"/v1/{operation['name']}")
        if "error" in operation:
            raise VertexEndpointError(f"Vertex AI operation {operation['name']} failed: {operation['error']}")
        return operation.get("response", {})

    def model_id(self, model: ServedModel) -> str:
        return f"keel-v{model.version}-{model.manifest_sha256[:12]}"

    def _model(self, api: VertexAPI, model: ServedModel) -> str:
        """The Vertex model of the version, uploaded the first time."""
        name = f"{self.parent}/models/{self.model_id(model)}"
        try:
            api.call("GET", f"/v1/{name}")
            return name
        except Exception as error:
            if getattr(error, "status", None) != 404:
                raise
        body = {
            "modelId": self.model_id(model),
            "model": {
                "displayName": f"v{model.version}",
                "containerSpec": {
                    "imageUri": require_image(self.image_uri, "Vertex AI"),
                    "env": [{"name": k, "value": v} for k, v in sorted(model.environment().items())],
                    "predictRoute": "/predict",
                    "healthRoute": "/health",
                },
            },
        }
        return self._wait(api, api.call("POST", f"/v1/{self.parent}/models:upload", body))["model"]

    def _endpoint(self, api: VertexAPI) -> dict[str, Any]:
        try:
            return api.call("GET", f"/v1/{self.endpoint_name}")
        except Exception as error:
            if getattr(error, "status", None) != 404:
                raise
        created = api.call(
            "POST", f"/v1/{self.parent}/endpoints?endpointId={self.endpoint_id}", {"displayName": self.endpoint_id}
        )
        self._wait(api, created)
        return api.call("GET", f"/v1/{self.endpoint_name}")

    def apply(self, state: RolloutState, champion: ServedModel, challenger: ServedModel | None) -> dict[str, Any]:
        if state.mode == "shadow":
            raise VertexEndpointError(
                "Vertex AI endpoints cannot mirror traffic to a shadow model; start a canary instead (mode canary)"
            )
        api = self.api()
        endpoint = self._endpoint(api)
        shares = {champion: 100}
        if state.mode == "canary" and challenger is not None:
            share = min(99, max(1, round(state.canary_percent)))  # Vertex splits in whole percent
            shares = {champion: 100 - share, challenger: share}
        wanted = {self._model(api, model): share for model, share in shares.items()}
        deployed = {d["model"]: d["id"] for d in endpoint.get("deployedModels", [])}
        calls = []
        for model, share in wanted.items():
            if model in deployed:
                continue
            split = {deployed[m]: wanted.get(m, 0) for m in deployed} | {"0": share}  # "0": the one deployed now
            body = {
                "deployedModel": {
                    "model": model,
                    "displayName": model.rsplit("/", 1)[-1],
                    "dedicatedResources": {
                        "machineSpec": {"machineType": self.machine_type},
                        "minReplicaCount": self.min_replicas,
                    },
                },
                "trafficSplit": split,
            }
            response = self._wait(api, api.call("POST", f"/v1/{self.endpoint_name}:deployModel", body))
            deployed[model] = response["deployedModel"]["id"]
            calls.append("deployModel")
        split = {deployed[m]: wanted.get(m, 0) for m in deployed}
        if endpoint.get("trafficSplit") != split and "deployModel" not in calls:
            api.call("PATCH", f"/v1/{self.endpoint_name}?updateMask=trafficSplit", {"trafficSplit": split})
            calls.append("trafficSplit")
        for model, deployed_id in list(deployed.items()):
            if model not in wanted:  # serves nothing now: free its replicas
                split = {d: s for d, s in split.items() if d != deployed_id}
                body = {"deployedModelId": deployed_id, "trafficSplit": split}
                self._wait(api, api.call("POST", f"/v1/{self.endpoint_name}:undeployModel", body))
                calls.append("undeployModel")
        return {
            "endpoint": f"vertex:{self.endpoint_name}",
            "endpoint_call": ", ".join(calls) or "none (already so)",
            "endpoint_weights": json.dumps({f"v{m.version}": s for m, s in shares.items()}, sort_keys=True),
        }
