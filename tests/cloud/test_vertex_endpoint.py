"""A rollout on a Vertex AI endpoint against a loopback fake: deploy a canary, shift back, undeploy, promote."""

import json
import os
from pathlib import Path

import pytest

from serving.cloud import ServedModel
from serving.cloud.vertex_endpoint import VertexEndpoint, VertexEndpointError
from serving.state import RolloutState
from tests.cloud.vertex_endpoint_fakes import FakeVertexEndpoints

FIXTURES = Path(__file__).parent / "fixtures"
IMAGE = "europe-west4-docker.pkg.dev/keel-test/keel/serving:test"
V1, V2 = (
    ServedModel(
        n, f"{n}" * 64, f"gs://keel-test/keel/models/registered/telco_churn/{n}{'0' * 63}", "gs://keel-test/keel"
    )
    for n in (1, 2)
)
ENDPOINT = "projects/keel-test/locations/europe-west4/endpoints/keel"


def state(mode: str, version: int | None = None, percent: float = 0.0) -> RolloutState:
    return RolloutState(mode=mode, challenger_version=version, canary_percent=percent, reason="test")


@pytest.fixture
def fake(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    server = FakeVertexEndpoints().start()
    monkeypatch.setattr(VertexEndpoint, "credentials", lambda self: AnonymousCredentials())
    yield server
    server.stop()


def test_a_canary_is_deployed_rolled_back_and_a_new_one_promoted(fake):
    endpoint = VertexEndpoint(project="keel-test", location="europe-west4", image_uri=IMAGE, api_endpoint=fake.url)
    v1, v2 = (f"keel-v{m.version}-{m.manifest_sha256[:12]}" for m in (V1, V2))

    assert endpoint.apply(state("off"), V1, None)["endpoint_call"] == "deployModel"
    assert fake.traffic(ENDPOINT) == {v1: 100}

    applied = endpoint.apply(state("canary", 2, 10.0), V1, V2)
    assert applied["endpoint_call"] == "deployModel" and json.loads(applied["endpoint_weights"]) == {"v1": 90, "v2": 10}
    assert fake.traffic(ENDPOINT) == {v1: 90, v2: 10}

    back = endpoint.apply(state("off"), V1, None)  # a rollback: traffic first, then the replicas go
    assert back["endpoint_call"] == "trafficSplit, undeployModel"
    assert fake.traffic(ENDPOINT) == {v1: 100}

    endpoint.apply(state("canary", 2, 10.0), V1, V2)
    promoted = endpoint.apply(state("off"), V2, None)
    assert promoted["endpoint_call"] == "trafficSplit, undeployModel"
    assert fake.traffic(ENDPOINT) == {v2: 100}
    assert endpoint.apply(state("off"), V2, None)["endpoint_call"] == "none (already so)"

    bodies = [[method, path, body] for method, path, body in fake.calls if method != "GET"]
    path = FIXTURES / "vertex_endpoint_rollout.json"
    if os.environ.get("KEEL_UPDATE_FIXTURES") == "1":
        path.write_text(json.dumps(bodies, indent=2, sort_keys=True) + "\n")
    assert bodies == json.loads(path.read_text())


def test_a_shadow_is_refused_clearly(fake):
    endpoint = VertexEndpoint(project="keel-test", location="europe-west4", image_uri=IMAGE, api_endpoint=fake.url)
    with pytest.raises(VertexEndpointError, match="cannot mirror traffic"):
        endpoint.apply(state("shadow", 2), V1, V2)
    assert fake.calls == []


def test_the_gcp_deployment_applies_rollouts_to_its_vertex_endpoint():
    from orchestration.deployments import resources_for

    environ = {
        "KEEL_GCS_ROOT": "gs://keel-test/keel",
        "KEEL_VERTEX_PROJECT": "keel-test",
        "KEEL_VERTEX_LOCATION": "europe-west4",
        "KEEL_VERTEX_IMAGE_URI": IMAGE,
        "KEEL_VERTEX_SERVICE_ACCOUNT": "keel-training@keel-test.iam.gserviceaccount.com",
        "KEEL_VERTEX_ENDPOINT_ID": "churn",
    }
    endpoint = resources_for("gcp", environ=environ)["endpoint"]
    assert isinstance(endpoint, VertexEndpoint)
    assert endpoint.endpoint_name == "projects/keel-test/locations/europe-west4/endpoints/churn"
    assert endpoint.image_uri is None  # the batch image cannot serve: the serving one is asked for
    assert resources_for("gcp", environ={**environ, "KEEL_SERVING_IMAGE_URI": IMAGE})["endpoint"].image_uri == IMAGE
