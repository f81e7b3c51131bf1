"""A rollout on an Azure ML managed online endpoint against a loopback ARM fake: canary, rollback, shadow, promotion."""

import json
import os
import time
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

from serving.cloud import ServedModel
from serving.cloud.azureml_endpoint import AzureMLEndpoint, AzureMLEndpointError
from serving.state import RolloutState
from tests.cloud.azureml_endpoint_fakes import FakeAzureMLEndpoints

FIXTURES = Path(__file__).parent / "fixtures"
IMAGE = "keeltest.azurecr.io/keel-serving:test"
V1, V2 = (
    ServedModel(n, f"{n}" * 64, f"az://keel/keel/models/registered/telco_churn/{n}{'0' * 63}", "az://keel/keel")
    for n in (1, 2)
)


class Token:
    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


def state(mode: str, version: int | None = None, percent: float = 0.0) -> RolloutState:
    return RolloutState(mode=mode, challenger_version=version, canary_percent=percent, reason="test")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    server = FakeAzureMLEndpoints(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)  # azure-core's requests transport trusts it
    monkeypatch.setattr(AzureMLEndpoint, "credential", lambda self: Token())
    yield server
    server.stop()


def endpoint(fake) -> AzureMLEndpoint:
    return AzureMLEndpoint(
        subscription_id="00000000-0000-0000-0000-000000000000",
        resource_group="keel-rg",
        workspace="keel-ws",
        location="westeurope",
        image=IMAGE,
        resource_manager_url=fake.url,
        poll_interval_seconds=0.1,
    )


def test_a_canary_is_weighted_rolled_back_shadowed_and_promoted(fake):
    online = endpoint(fake)
    assert "create endpoint" in online.apply(state("canary", 2, 10.0), V1, V2)["endpoint_call"]
    assert fake.traffic("keel") == ({"v1": 90, "v2": 10}, {})

    assert online.apply(state("off"), V1, None)["endpoint_call"] == "traffic, delete v2"  # traffic first
    assert fake.traffic("keel") == ({"v1": 100}, {}) and set(fake.deployments["keel"]) == {"v1"}

    online.apply(state("shadow", 2), V1, V2)
    assert fake.traffic("keel") == ({"v1": 100}, {"v2": 50})

    assert online.apply(state("off"), V2, None)["endpoint_call"] == "traffic, delete v1"  # v2 promoted
    assert fake.traffic("keel") == ({"v2": 100}, {}) and set(fake.deployments["keel"]) == {"v2"}
    assert online.apply(state("off"), V2, None)["endpoint_call"] == "none (already so)"

    bodies = [[m, p.split("?")[0].replace(fake.url.rstrip("/"), ""), b] for m, p, b in fake.requests if m != "GET"]
    path = FIXTURES / "azureml_endpoint_rollout.json"
    if os.environ.get("KEEL_UPDATE_FIXTURES") == "1":
        path.write_text(json.dumps(bodies, indent=2, sort_keys=True) + "\n")
    assert bodies == json.loads(path.read_text())


def test_a_refused_call_names_the_resource_and_azures_reason(fake):
    online = endpoint(fake)
    online.apply(state("off"), V1, None)
    fake.refuse_deployments = "Not enough quota available for Standard_DS3_v2"
    with pytest.raises(AzureMLEndpointError, match=r"onlineEndpoints/keel/deployments/v2 answered 400: .*quota"):
        online.apply(state("canary", 2, 10.0), V1, V2)
    assert fake.traffic("keel") == ({"v1": 100}, {})  # the champion keeps every request


def test_the_azure_deployment_applies_rollouts_to_its_online_endpoint(fake):
    from orchestration.deployments import resources_for

    environ = {
        "KEEL_AZURE_STORAGE_ROOT": "az://keel/keel",
        "KEEL_AZURE_STORAGE_ACCOUNT_URL": "https://keeltest.blob.core.windows.net",
        "KEEL_AZUREML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "KEEL_AZUREML_RESOURCE_GROUP": "keel-rg",
        "KEEL_AZUREML_WORKSPACE": "keel-ws",
        "KEEL_AZUREML_COMPUTE": "cpu-cluster",
        "KEEL_AZUREML_IMAGE": IMAGE,
        "KEEL_AZUREML_DATASTORE": "keel",
        "KEEL_AZUREML_RESOURCE_MANAGER_URL": fake.url,
    }
    online = resources_for("azure", environ=environ)["endpoint"]
    assert isinstance(online, AzureMLEndpoint) and online.image is None  # not the batch image
    with pytest.raises(AzureMLEndpointError, match="KEEL_AZUREML_LOCATION and KEEL_SERVING_IMAGE_URI"):
        online.apply(state("off"), V1, None)
    complete = {**environ, "KEEL_AZUREML_LOCATION": "westeurope", "KEEL_SERVING_IMAGE_URI": IMAGE}
    located = resources_for("azure", environ=complete)["endpoint"]
    located.apply(state("off"), V1, None)
    assert fake.traffic("keel") == ({"v1": 100}, {})
