"""A server killed without its final flush (SIGKILL: the OOM killer, a lost node) loses the rows it answered in its
last flush interval; the next server of its spool says so once: in /metadata, in /health's reasons and in the status
the sensor alert_on_request_log reads. A clean stop (SIGTERM flushes) and a live neighbour are never reported."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from ml.params import load_params
from orchestration.request_log_alerts import request_log_alerts
from resources.storage import ArtifactStore
from serving.request_log import read_status
from tests.conftest import relocate_mlflow
from tests.serving.conftest import REPO, Server, free_port, start_endpoint, wait_until_healthy


@pytest.fixture
def project(serving_template: Path, tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(serving_template, project, symlinks=True)
    relocate_mlflow(project, serving_template)
    return project


def _health(server: Server) -> dict:
    return httpx.get(f"{server.url}/health", timeout=10).json()


def _alerts(store_root: str, cursor: str | None) -> tuple[list[str], str]:
    return request_log_alerts(read_status(store_root), cursor)


def test_a_killed_server_is_reported_once_by_the_next_and_a_clean_stop_is_not(project, records):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    store_root = ArtifactStore(root=str(project / "var" / "storage")).root
    flush_rows = load_params(project / "params.yaml").serving.log_flush_rows
    started: list = []  # (process, its log file)

    def start(name: str) -> Server:
        url = f"http://127.0.0.1:{free_port()}"
        process, log = start_endpoint(project, int(url.rsplit(":", 1)[1]), env, project / f"{name}.log")
        started.append((process, log))
        wait_until_healthy(process, url, project / f"{name}.log")
        return Server(project, url, process)

    try:
        killed = start("killed")
        assert killed.predict(records[:20]).status_code == 200
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait(timeout=30)

        restarted = start("restarted")
        [stop] = restarted.metadata()["request_log"]["unclean_stop_details"]
        assert stop["pid"] == killed.process.pid and restarted.metadata()["request_log"]["unclean_stops"] == 1
        reasons = [r for r in _health(restarted)["reasons"] if "without its final flush" in r]
        assert len(reasons) == 1 and f"pid {killed.process.pid}" in reasons[0], _health(restarted)
        assert f"up to {flush_rows} row(s)" in reasons[0]
        deadline = time.monotonic() + 30
        while not any(status.get("unclean_stops") for status in read_status(store_root)):
            assert time.monotonic() < deadline, read_status(store_root)
            time.sleep(0.2)
        texts, cursor = _alerts(store_root, None)
        assert len(texts) == 1 and f"pid {killed.process.pid}" in texts[0], texts
        assert "stopped without its final flush" in texts[0] and f"up to {flush_rows} row(s)" in texts[0]
        assert stop["started"] in texts[0] and stop["last_flush"] in texts[0]

        # A rolling restart: a second server on the same spool while the first is alive flags nothing.
        neighbour = start("neighbour")
        time.sleep(1)  # a few of each server's flushes (every 0.2 s), where a stopped neighbour is looked for
        assert neighbour.metadata()["request_log"]["unclean_stops"] == 0
        assert restarted.metadata()["request_log"]["unclean_stops"] == 1  # reported once, not at every flush

        # Clean stops (SIGTERM flushes and says so): neither the neighbour nor the next server reports them.
        restarted.process.terminate()
        restarted.process.wait(timeout=30)
        time.sleep(1)
        assert neighbour.metadata()["request_log"]["unclean_stops"] == 0
        neighbour.process.terminate()
        neighbour.process.wait(timeout=30)
        after_clean = start("after-clean")
        time.sleep(1)
        assert after_clean.metadata()["request_log"]["unclean_stops"] == 0
        assert not [r for r in _health(after_clean)["reasons"] if "without its final flush" in r]
        assert _alerts(store_root, cursor)[0] == []
    finally:
        for process, log in started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except Exception:
                    process.kill()
            log.close()
