"""The browser tests' world: a seeded project copy, `make ui`'s launcher on free loopback ports with a
temporary DAGSTER_HOME, and Debian's headless Chromium driven by Playwright.

Every test leaves a screenshot in test-artifacts/browser/ (KEEL_TEST_ARTIFACTS overrides the folder),
taken when the test ends, passed or failed; tests add their own at the moments worth seeing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.history import History, seed
from tests.conftest import REPO, VENV_BIN, relocate_mlflow

ARTIFACTS = Path(os.environ.get("KEEL_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
STARTUP_SECONDS = 240  # the webserver, the daemon and the code location, on two busy cores
WORKSPACE_QUERY = "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"


@dataclass(frozen=True)
class Ui:
    url: str  # the Dagster UI
    reports_url: str  # the stored HTML reports
    project: Path
    history: History
    log: Path  # what `make ui`'s launcher printed

    def graphql(self, query: str) -> dict:
        """A query to the webserver's GraphQL endpoint, which the UI itself talks to."""
        body = json.dumps({"query": query}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer
        return answer["data"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the browser tests drive Debian's Chromium: apt-get install chromium (.ci/run does)")
    return path


@pytest.fixture(scope="session")
def ui_project(trained_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, History, int]:
    """A copy of the trained project seeded with a short demo run, and the port its report links use."""
    project = tmp_path_factory.mktemp("ui") / "project"
    shutil.copytree(trained_template, project, symlinks=True)
    relocate_mlflow(project, trained_template)
    reports_port = free_port()
    return project, seed(project, f"http://127.0.0.1:{reports_port}"), reports_port


def _wait_until_loaded(ui: Ui, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the UI exited with {process.returncode}:\n{ui.log.read_text()[-4000:]}")
        try:
            entries = ui.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
            last = repr(entries)
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                assert not errors, errors
                return
        except OSError as error:
            last = str(error)
        time.sleep(1)
    pytest.fail(f"the UI did not load the code location in {STARTUP_SECONDS}s ({last}):\n{ui.log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def ui(ui_project: tuple[Path, History, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """`python -m demo.ui` (what `make ui` runs) in the seeded copy, until the session ends."""
    project, history, reports_port = ui_project
    port = free_port()
    log = tmp_path_factory.mktemp("ui-log") / "ui.log"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(project / "var" / "dagster"),
    }
    env.pop("KEEL_DEPLOYMENT", None)
    command = [sys.executable, "-m", "demo.ui", "--port", str(port), "--reports-port", str(reports_port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = Ui(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{reports_port}", project, history, log)
    try:
        _wait_until_loaded(served, process)
        yield served
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Stop the launcher as `kill` would (it stops dagster dev), then anything left of its process group."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # pages query the webserver, which shares two cores with the runs
    with sync_playwright() as playwright:
        # Playwright adds its usual headless flags (no sandbox as root, no background networking).
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=["--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, ui: Ui, request: pytest.FixtureRequest):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=ui.url)
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    screenshot(page, request.node.name)
    context.close()


def screenshot(page, name: str) -> Path:
    """A screenshot worth keeping, in the artifacts folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=path)
    return path
