"""ParamsResource: the one reader of params.yaml, parsed once per version of the file."""

import shutil

import dagster as dg
import pytest

from resources.params import ParamsResource
from resources.registry import ModelRegistry
from tests.conftest import REPO, set_params


def test_the_file_is_parsed_once_and_again_when_it_changes(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    params = ParamsResource(project_dir=str(tmp_path))
    first = params.load()
    assert params.load() is first  # unchanged file: the same parsed model
    set_params(tmp_path, gate={"min_auc": 0.7})
    assert params.load().gate.min_auc == 0.7 and first.gate.min_auc == "auto"


def test_a_bad_key_fails_the_step_naming_it(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, gate={"min_aUC": 0.7})
    with pytest.raises(dg.Failure, match=r"params.yaml: gate.min_aUC: unknown key"):
        ParamsResource(project_dir=str(tmp_path)).load()
    with pytest.raises(dg.Failure, match=r"nowhere/params.yaml: no such file"):
        ParamsResource(project_dir=str(tmp_path / "nowhere")).load()


def test_the_registry_takes_the_model_name_and_promotion_from_its_section(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    params = ParamsResource(project_dir=str(tmp_path))
    registry = ModelRegistry(root=str(tmp_path / "mlflow"), params=params)
    assert (registry.model_name, registry.promotion) == ("telco_churn", "auto")
    set_params(tmp_path, registry={"model_name": None, "promotion": "manual"}, dataset={"name": "churn_eu"})
    assert (registry.model_name, registry.promotion) == ("churn_eu", "manual")
