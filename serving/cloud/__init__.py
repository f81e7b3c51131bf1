"""Where a rollout is applied besides rollout.json: the deployment's endpoint (local, SageMaker, Vertex AI, Azure ML).

Every endpoint resource has `apply(state, champion, challenger)`: make the endpoint serve what the
rollout state says (the champion alone, a weighted canary, or a mirrored shadow) and return what it
did, for the `deployment` asset's metadata. The local server reads rollout.json itself, so the local
endpoint does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from serving.state import RolloutState


@dataclass(frozen=True)
class ServedModel:
    """A registered version as an endpoint serves it: its verified copy in the artifact store."""

    version: int
    manifest_sha256: str
    model_uri: str  # the published artifact folder (resources/layout.py published_model)
    store_root: str  # the artifact store: the container logs its requests there and reads rollout.json

    def environment(self) -> dict[str, str]:
        """What the model container (serving/cloud/container.py) is told."""
        return {
            "KEEL_MODEL_URI": self.model_uri,
            "KEEL_MODEL_SHA256": self.manifest_sha256,
            "KEEL_MODEL_VERSION": str(self.version),
            "KEEL_STORE_ROOT": self.store_root,
        }


class Endpoint(dg.ConfigurableResource):
    """The deployment's serving endpoint."""

    def apply(self, state: RolloutState, champion: ServedModel, challenger: ServedModel | None) -> dict[str, Any]:
        raise NotImplementedError


class LocalEndpoint(Endpoint):
    """The project's own server (`make serve`): it polls rollout.json and the aliases, so nothing to call."""

    def apply(self, state: RolloutState, champion: ServedModel, challenger: ServedModel | None) -> dict[str, Any]:
        return {"endpoint": "local server (reads rollout.json every serving.poll_seconds)"}


def require_image(image: str | None, platform: str) -> str:
    if not image:
        raise ValueError(
            f"a rollout on {platform} needs the serving image in KEEL_SERVING_IMAGE_URI (built from Dockerfile.serving)"
        )
    return image


def shares(state: RolloutState, champion: int, challenger: int | None) -> dict[str, float]:
    """Percent of the answers each version gives (a shadow scores every request but answers none)."""
    if state.mode == "canary" and challenger is not None:
        return {f"v{champion}": 100.0 - state.canary_percent, f"v{challenger}": state.canary_percent}
    return {f"v{champion}": 100.0}
