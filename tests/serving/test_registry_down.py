"""An unreachable MLflow tracking server is reported by /health at once, not after MLflow's minutes of retries."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import httpx

from tests.serving.project import REPO


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_an_unreachable_tracking_server_is_a_refresh_problem_within_seconds(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    port, registry_port = _closed_port(), _closed_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{registry_port}",
    }
    for variable in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        env.pop(variable, None)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed after the process
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--project-dir", str(tmp_path), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        started, answer = time.monotonic(), None
        while time.monotonic() - started < 90:  # MLflow's default retries keep the first refresh ~2 min
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answer is not None, f"no answer on /health within 90 s:\n{(tmp_path / 'server.log').read_text()}"
        body = answer.json()
        assert answer.status_code == 503 and body["status"] == "unavailable"
        [problem] = body["problems"]
        assert problem["kind"] == "refresh" and f"127.0.0.1:{registry_port}" in problem["reason"], problem
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
