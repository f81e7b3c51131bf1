"""A registration SIGKILLed right after MLflow created the version: the dead run held the alias pool's
slot and the alias never moved. Re-executed, registration takes the slot over from the dead run (which
is marked failed) and finishes the move on the same version, without waiting for run monitoring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.registered_model import registered_model
from orchestration.deployments import local
from resources.registry import ALIAS_POOL, ModelRegistry
from tests.assets.test_registration import MODEL, gated, register_alone
from tests.conftest import REPO


@pytest.fixture
def instance(trained_project: Path):
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as inst:
        yield inst


@pytest.fixture
def registry(trained_project: Path) -> ModelRegistry:
    return local(trained_project)["registry"]


KILLED_REGISTRATION = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg
    from assets.registered_model import registered_model
    from orchestration.deployments import local
    from resources.registry import ModelRegistry
    from tests.conftest import training_assets

    project, flag = Path(sys.argv[1]), Path(sys.argv[2])

    def killed_here(self, *args, **kwargs):  # MLflow has created the version; the alias has not moved
        flag.write_text("registered")
        time.sleep(3600)

    ModelRegistry.move_alias = killed_here
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as instance:
        dg.materialize(training_assets(), selection=[registered_model], resources=local(project), instance=instance)
    """
)


def kill_at_flag(script: str, trained_project, never: str) -> None:
    """Run a registration script in its own process and SIGKILL it once it writes its flag file."""
    flag = trained_project / "killed-at"
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(trained_project), str(flag)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not flag.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, never
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_registration_killed_after_the_version_was_created_finishes_its_move_when_re_executed(
    trained_project, instance, registry
):
    gated(trained_project, instance)
    kill_at_flag(KILLED_REGISTRATION, trained_project, "the registration never reached its alias move")
    assert registry.versions(MODEL) == [1, 2] and registry.champion() == 1
    [dead] = instance.event_log_storage.get_concurrency_info(ALIAS_POOL).active_run_ids
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.STARTED

    started = time.monotonic()
    resumed = register_alone(trained_project, instance)
    assert resumed.success and time.monotonic() - started < 300
    assert registry.versions(MODEL) == [1, 2] and registry.champion() == 2  # the same version, now champion
    recorded = instance.get_latest_materialization_event(registered_model.key).asset_materialization.metadata
    assert recorded["resumed"].value is True and recorded["moved_to"].value == "v2"
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    assert instance.event_log_storage.get_concurrency_info(ALIAS_POOL).active_run_ids == set()


KILLED_AFTER_THE_MOVE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg
    import assets.registered_model
    from assets.registered_model import registered_model
    from orchestration.deployments import local
    from tests.conftest import training_assets

    project, flag = Path(sys.argv[1]), Path(sys.argv[2])

    def killed_here(*args, **kwargs):  # the champion alias has moved; the card and the record are not written
        flag.write_text("moved")
        time.sleep(3600)

    assets.registered_model.refresh_card = killed_here
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as instance:
        dg.materialize(training_assets(), selection=[registered_model], resources=local(project), instance=instance)
    """
)


def test_a_registration_killed_after_its_alias_moved_records_the_move_and_the_card_when_re_executed(
    trained_project, instance, registry
):
    """The champion moved, then the run was killed: no card, no registered_model record, so no alert of
    the move. The re-execution (by hand, or the retrain job's retry of a killed run) records the move it
    finds made by the killed attempt, with the cards of both versions, so alert_on_monitoring sends it."""
    from assets.cards import read_card
    from orchestration.alerts import _move_text

    gated(trained_project, instance)
    kill_at_flag(KILLED_AFTER_THE_MOVE, trained_project, "the registration never moved the alias")
    assert registry.champion() == 2 and read_card(registry, MODEL, 2) is None
    before = instance.get_latest_materialization_event(registered_model.key).asset_materialization.metadata
    assert before["moved_to"].value == "v1"  # the killed attempt recorded nothing

    resumed = register_alone(trained_project, instance)
    assert resumed.success
    assert registry.versions(MODEL) == [1, 2] and registry.champion() == 2
    recorded = instance.get_latest_materialization_event(registered_model.key).asset_materialization.metadata
    assert recorded["moved_from"].value == "v1" and recorded["moved_to"].value == "v2"
    assert "champion" in _move_text({k: v.value for k, v in recorded.items()})
    assert read_card(registry, MODEL, 2) is not None
    assert [m["to_version"] for m in read_card(registry, MODEL, 1)["alias_history"]][-1] == 2

    again = register_alone(trained_project, instance)  # recorded once: a second re-execution adds no move
    assert again.success
    latest = instance.get_latest_materialization_event(registered_model.key).asset_materialization.metadata
    assert "alias_move" not in latest
