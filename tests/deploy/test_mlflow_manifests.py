"""deploy/mlflow/mlflow.yaml: valid for the pinned Kubernetes version, the team server's command line,
its secrets by reference only, and a Service where the Dagster values look for it."""

from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO
from tests.deploy import chart
from tests.deploy.test_k8s_contract import KUBERNETES_VERSION

MANIFESTS = REPO / "deploy" / "mlflow" / "mlflow.yaml"


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    documents = [doc for doc in yaml.safe_load_all(MANIFESTS.read_text()) if doc]
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents), "one object of each kind"
    return by_kind


def server(objects: dict[str, dict]) -> dict:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize("kind", ["Deployment", "Service"])
def test_each_object_is_valid_for_the_pinned_kubernetes_version(objects, kind):
    kubernetes_validate.validate(objects[kind], KUBERNETES_VERSION, strict=True)


def test_no_secret_object_ships_with_the_manifests(objects):
    assert set(objects) == {"Deployment", "Service"}  # Secrets are made by kubectl, never committed


def test_the_server_runs_the_team_command_line(objects):
    command = server(objects)["command"]
    assert command[:2] == ["mlflow", "server"]
    assert option(command, "--app-name") == "basic-auth"
    assert option(command, "--artifacts-destination").startswith("s3://")
    assert option(command, "--host") == "0.0.0.0"
    # The backend store comes from the environment (a Secret), never from the command line.
    assert "--backend-store-uri" not in command
    env = {item["name"]: item for item in server(objects)["env"]}
    assert "MLFLOW_BACKEND_STORE_URI" in env


def test_every_credential_comes_from_a_secret(objects):
    env = {item["name"]: item for item in server(objects)["env"]}
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert "value" not in env[name], f"{name} is written into the manifest"
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "keel-mlflow-server", name
    # The auth app's config file (its user store's database URL) is a mounted Secret.
    mount_dir = env["MLFLOW_AUTH_CONFIG_PATH"]["value"].rsplit("/", 1)[0]
    (mount,) = [m for m in server(objects)["volumeMounts"] if m["mountPath"] == mount_dir]
    (volume,) = [v for v in objects["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "keel-mlflow-auth"


def test_the_service_is_where_the_dagster_values_point(objects):
    uri = urlparse(
        next(
            e["value"] for e in chart.user_deployment(chart.load_values())["env"] if e["name"] == "MLFLOW_TRACKING_URI"
        )
    )
    service = objects["Service"]
    name, namespace = uri.hostname.split(".")[:2]
    assert (name, namespace) == (service["metadata"]["name"], chart.NAMESPACE)
    (port,) = service["spec"]["ports"]
    assert port["port"] == uri.port
    # The Service reaches the server's pods and port, and the server accepts that Host header.
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert port["targetPort"] in {p["name"] for p in server(objects)["ports"]}
    assert uri.netloc in option(server(objects)["command"], "--allowed-hosts").split(",")


def test_the_server_runs_from_the_image_the_dagster_values_name(objects):
    assert server(objects)["image"] == chart.image_name(chart.user_deployment(chart.load_values())["image"])
