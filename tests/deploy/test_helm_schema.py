"""deploy/dagster/values.yaml against the Dagster chart's own values schema, as `helm` checks it.

The chart is not part of this repository; pull the pinned version and point the test at it:

    helm pull dagster/dagster --version 1.13.27 --untar --untardir /tmp/chart
    DAGSTER_HELM_CHART=/tmp/chart/dagster pytest tests/deploy/test_helm_schema.py

As Helm does, the values are merged over the chart's defaults (maps key by key, lists replaced) and the
result is validated against the chart's values.schema.json, and likewise for the dagster-user-deployments
subchart. The schema's references to Kubernetes definitions (kubernetesjsonschema.dev, which Helm would
fetch) resolve offline to the oldest Kubernetes schema kubernetes-validate ships. Without a chart the test
is skipped, saying so; tests/deploy/test_k8s_contract.py holds the values to what Dagster itself does.
"""

import json
import os
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from tests.deploy import chart

CHART_VERSION = "1.13.27"
CHART = os.environ.get("DAGSTER_HELM_CHART")

pytestmark = pytest.mark.skipif(
    not CHART, reason="set DAGSTER_HELM_CHART to an unpacked dagster chart (helm pull dagster/dagster --untar)"
)


def coalesce(defaults, values):
    """Helm's merge of user values over a chart's defaults: maps merged, anything else replaced, null removes."""
    if not (isinstance(defaults, dict) and isinstance(values, dict)):
        return values
    merged = dict(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = coalesce(defaults.get(key), value)
    return merged


def kubernetes_definitions() -> referencing.Resource:
    """kubernetes-validate's Kubernetes definitions, under the `definitions` key the chart's schema refers to."""
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    oldest = min(
        (p for p in root.iterdir() if p.name.endswith("-local")),
        key=lambda p: tuple(map(int, p.name[1:].split("-")[0].split("."))),
    )
    document = json.loads((oldest / "_definitions.json").read_text())
    document["definitions"] = document["$defs"]
    return referencing.Resource.from_contents(document, default_specification=referencing.jsonschema.DRAFT202012)


def validate(chart_dir: Path, values: dict) -> list[str]:
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    merged = coalesce(yaml.safe_load((chart_dir / "values.yaml").read_text()), values)
    definitions = kubernetes_definitions()

    def retrieve(uri: str) -> referencing.Resource:
        if uri.startswith("https://kubernetesjsonschema.dev/") and uri.endswith("/_definitions.json"):
            return definitions
        raise referencing.exceptions.NoSuchResource(ref=uri)

    registry = referencing.Registry(retrieve=retrieve)
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator = validator_class(schema, registry=registry)
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(merged)]


@pytest.fixture(scope="module")
def chart_dir() -> Path:
    path = Path(CHART)
    version = yaml.safe_load((path / "Chart.yaml").read_text())["version"]
    assert version == CHART_VERSION, f"{path} is chart {version}; the values are for {CHART_VERSION}"
    return path


def test_the_values_pass_the_charts_schema(chart_dir):
    assert validate(chart_dir, chart.load_values()) == []


def test_the_user_deployment_values_pass_the_subcharts_schema(chart_dir):
    values = chart.load_values()
    subchart_values = {**values["dagster-user-deployments"], "global": values.get("global", {})}
    assert validate(chart_dir / "charts" / "dagster-user-deployments", subchart_values) == []


def test_a_misspelt_key_is_refused_by_the_charts_schema(chart_dir):
    values = chart.load_values()
    values["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = [{"name": "keel-mlflow-credentials"}]
    assert any("envSecret" in error for error in validate(chart_dir, values))
