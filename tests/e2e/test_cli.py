"""The shell commands users type, run from the root of a project copy."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run

DAGSTER = str(Path(sys.executable).parent / "dagster")


def dagster(project, *args):
    return run([DAGSTER, *args], cwd=project, env={"DAGSTER_HOME": str(project / "var" / "dagster")}, check=False)


@pytest.mark.parametrize("selection", ["raw_data,training_set", "key:raw_data or key:training_set"])
def test_asset_materialize_with_a_string_selection(project, selection):
    proc = dagster(project, "asset", "materialize", "-m", "orchestration.definitions", "--select", selection)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "ord() expected string of length 1" not in output  # the ANTLR runtime trap
    for event in (
        "Asset check 'schema' on 'raw_data' passed",
        "training_set - ASSET_MATERIALIZATION - Materialized value training_set",  # the step's success line once went missing
        "RUN_SUCCESS",
    ):
        assert event in output, output[-6000:]  # the tail whole: pytest shortens long assertion values


def test_job_execute_by_name(project):
    proc = dagster(project, "job", "execute", "-m", "orchestration.definitions", "-j", "prepare_data")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RUN_SUCCESS" in proc.stdout + proc.stderr


def test_definitions_validate_with_the_workspace(project):
    proc = dagster(project, "definitions", "validate", "-w", "workspace.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_unknown_deployment_is_a_clear_error(project):
    proc = run(
        [DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=project,
        env={"DAGSTER_HOME": str(project / "var" / "dagster"), "KEEL_DEPLOYMENT": "mainframe"},
        check=False,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "KEEL_DEPLOYMENT='mainframe' is not a known deployment; known deployments: " in output
    assert re.search(r"known deployments: (\w+, )*aws, (\w+, )*local", output)


def test_without_dagster_home_a_later_step_says_the_instance_is_temporary(project):
    """A day checked under var/dagster, then scored from a shell that lacks DAGSTER_HOME."""
    import os

    import dagster as dg

    from assets.incoming_data import incoming_data
    from orchestration.deployments import local

    day = "2026-10-01"
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as instance:
        assert dg.materialize([incoming_data], resources=local(project), partition_key=day, instance=instance).success
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    command = [DAGSTER, "asset", "materialize", "-m", "orchestration.definitions", "--select", "batch_predictions"]
    proc = subprocess.run([*command, "--partition", day], cwd=project, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        f"incoming_data partition {day}: no data checks of run" in output
        and "DAGSTER_HOME is unset, so this run uses a temporary Dagster instance" in output
    ), output[-6000:]
