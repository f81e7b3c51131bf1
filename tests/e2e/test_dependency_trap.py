"""DVC pins the ANTLR runtime to 4.9; Dagster's selection parser needs 4.13. We override to 4.13.2.

Both sides are held by tests: string selections here and in test_cli.py, DVC in test_dvc.py. This
file also pins down the known cost, so a change in either package shows up as a failing test.
"""

import subprocess
import sys
from importlib.metadata import version

import dagster as dg
import pytest

from assets.raw_data import raw_data
from assets.training_set import training_set
from orchestration.deployments import local


def test_antlr_runtime_is_the_one_dagster_needs():
    assert version("antlr4-python3-runtime") == "4.13.2"


@pytest.mark.parametrize("text", ["raw_data", "key:raw_data", "key:raw_data+"])
def test_string_selections_parse(text):
    graph = dg.Definitions(assets=[raw_data, training_set], resources=local()).resolve_asset_graph()
    selected = dg.AssetSelection.from_string(text).resolve(graph)
    assert raw_data.key in selected


def test_dvc_commands_import_without_hydra():
    # `dvc repro/push/pull/status` and dvc.api load without touching omegaconf.
    code = "import dvc.api, dvc.repo, dvc.cli, sys; print('omegaconf' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_known_cost_hydra_features_of_dvc_are_unavailable():
    # omegaconf (used by `dvc exp run -S` and the experiment queue) cannot load its 4.9 grammar.
    proc = subprocess.run([sys.executable, "-c", "import omegaconf"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Could not deserialize ATN" in proc.stderr
