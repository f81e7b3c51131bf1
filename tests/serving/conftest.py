"""The endpoint as `make serve` runs it (`python -m serving`, a subprocess on a free port) on a test project."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import orjson
import pytest
import yaml

from ml.params import load_params
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore
from tests.conftest import relocate_mlflow
from tests.serving.project import REPO, example_rows, make_project


@pytest.fixture(scope="session")
def serving_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serving") / "project"
    make_project(root)
    settings = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    settings["serving"].update(poll_seconds=0.2, log_flush_seconds=0.2)
    (root / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def records() -> list[dict]:
    """Example rows as JSON objects, as a caller sends them."""
    return orjson.loads(example_rows().head(2000).to_json(orient="records"))


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_endpoint(project: Path, port: int, env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, IO]:
    """`python -m serving` for `project` on `port`, its output in `log_path` (the caller closes the log)."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed after the process
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--project-dir", str(project), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, log


def wait_until_healthy(process: subprocess.Popen, url: str, log_path: Path, timeout: float = 180) -> None:
    """Until `url/health` answers 200; fails naming the server's output when it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}):\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no healthy server after {timeout:.0f} s:\n{log_path.read_text()}")
        time.sleep(0.2)


@dataclass
class Server:
    project: Path
    url: str
    process: subprocess.Popen

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(root=str(self.project / "var" / "mlflow"))

    @property
    def store_root(self) -> str:
        return ArtifactStore(root=str(self.project / "var" / "storage")).root

    @property
    def model_name(self) -> str:
        return load_params(self.project / "params.yaml").model_name

    def predict(self, rows: list[dict], **kwargs) -> httpx.Response:
        return httpx.post(f"{self.url}/predict", json={"rows": rows}, timeout=30, **kwargs)

    def metadata(self) -> dict:
        return httpx.get(f"{self.url}/metadata", timeout=10).json()

    def wait_for(self, condition, what: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metadata = self.metadata()
            if condition(metadata):
                return metadata
            time.sleep(0.1)
        raise AssertionError(f"the server did not {what} within {timeout:.0f} s: {self.metadata()}")


@pytest.fixture(scope="module")
def server(serving_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A private copy of the project and the endpoint serving it; stopped (by its pid) after the module."""
    project = tmp_path_factory.mktemp("served") / "project"
    shutil.copytree(serving_template, project, symlinks=True)
    relocate_mlflow(project, serving_template)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    process, log = start_endpoint(project, port, env, project / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, url, project / "server.log")
        yield Server(project, url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
