"""The daily loop under the real Dagster daemon on the local instance: `dagster-daemon run` in a project
copy with its own Dagster home, the sensors turned on with the CLI, a drifted day's snapshot and its labels
written; the daemon scores the day, takes its labels in and retrains on its drift (tests/e2e/daily_loop.py
holds what must happen; test_team.py asserts the same on the team instance)."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from tests.conftest import clear_daily_files, run
from tests.e2e.daily_loop import assert_the_daily_loop, tell_the_story, wait_for_the_daily_loop, write_day_and_labels

BIN = Path(sys.executable).parent


def test_the_daemon_scores_an_arrived_day_takes_its_labels_in_and_retrains_on_its_drift(trained_project: Path):
    project, home = trained_project, trained_project / "var" / "dagster"
    clear_daily_files(project)
    tell_the_story(project)
    env = {"DAGSTER_HOME": str(home)}
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    full_env.pop("KEEL_ALERT_WEBHOOK_URL", None)
    log_path = project / "daemon.log"
    log = log_path.open("w")
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=project,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        day = write_day_and_labels(project, 1)
        started = run([str(BIN / "dagster"), "sensor", "start", "-w", "workspace.yaml", "--start-all"], project, env)
        assert "Started all sensors" in started.stdout + started.stderr, started.stdout + started.stderr
        with dg.DagsterInstance.from_config(str(home)) as instance:
            loop = wait_for_the_daily_loop(instance, day, log_path.read_text, lambda: daemon.poll() is None)
            assert_the_daily_loop(instance, day, loop, log_path.read_text(), champion_before=1)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
