"""The IO manager's refusal when an upstream asset was never materialized says when the instance is why."""

import shutil

import dagster as dg
import pytest

from assets.features import features
from assets.raw_data import raw_data
from assets.training_set import training_set
from orchestration.deployments import local
from tests.conftest import REPO


@pytest.mark.parametrize("home", [None, "set"])
def test_a_never_materialized_upstream_names_dagster_home_when_it_is_unset(tmp_path, monkeypatch, home):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    if home is None:
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
    else:
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    result = dg.materialize(
        [raw_data, training_set, features],
        selection=[features],
        resources=local(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),  # instance_for_test would set DAGSTER_HOME itself
        raise_on_error=False,
    )
    message = result.failure_data_for_node("features").error.message
    assert "training_set has never been materialized; " in message
    assert ("DAGSTER_HOME is unset, so this run's Dagster instance knows no earlier run" in message) == (home is None)
