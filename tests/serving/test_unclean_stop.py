"""A server killed without its final flush (SIGKILL: the OOM killer, a lost node) held the rows it answered in its
last flush interval in memory and in its write-ahead file; the next server of its spool writes them (each once) and
says so once: in /metadata, in /health's reasons and in the status the sensor alert_on_request_log reads. A clean stop
(SIGTERM flushes) and a live neighbour are never reported."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from ml.params import load_params
from orchestration.request_log_alerts import request_log_alerts
from resources.storage import ArtifactStore
from serving.request_log import logged_days, read_day, read_status
from tests.conftest import relocate_mlflow
from tests.serving.conftest import REPO, Server, free_port, start_endpoint, wait_until_healthy


@pytest.fixture
def project(serving_template: Path, tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(serving_template, project, symlinks=True)
    relocate_mlflow(project, serving_template)
    return project


@pytest.fixture
def start(project: Path) -> Iterator[Callable[[str], Server]]:
    """Start a real server of the project, named for its log file; each is stopped at the end of the test."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    started: list = []  # (process, its log file)

    def start_one(name: str) -> Server:
        url = f"http://127.0.0.1:{free_port()}"
        process, log = start_endpoint(project, int(url.rsplit(":", 1)[1]), env, project / f"{name}.log")
        started.append((process, log))
        wait_until_healthy(process, url, project / f"{name}.log")
        return Server(project, url, process)

    yield start_one
    for process, log in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except Exception:
                process.kill()
        log.close()


def _health(server: Server) -> dict:
    return httpx.get(f"{server.url}/health", timeout=10).json()


def _alerts(store_root: str, cursor: str | None) -> tuple[list[str], str]:
    return request_log_alerts(read_status(store_root), cursor)


def test_a_killed_server_is_reported_once_by_the_next_and_a_clean_stop_is_not(project, records, start):
    store_root = ArtifactStore(root=str(project / "var" / "storage")).root
    killed = start("killed")
    assert killed.predict(records[:20]).status_code == 200
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait(timeout=30)

    restarted = start("restarted")
    [stop] = restarted.metadata()["request_log"]["unclean_stop_details"]
    assert stop["pid"] == killed.process.pid and restarted.metadata()["request_log"]["unclean_stops"] == 1
    reasons = [r for r in _health(restarted)["reasons"] if "without its final flush" in r]
    assert len(reasons) == 1 and f"pid {killed.process.pid}" in reasons[0], _health(restarted)
    assert "recovered from its write-ahead file" in reasons[0] and "none lost" in reasons[0]
    assert stop["rows_recovered"] + stop["rows_already_logged"] == 20 and stop["rows_lost"] == 0, stop
    assert sum(len(read_day(store_root, day)) for day in logged_days(store_root)) == 20  # each row once
    deadline = time.monotonic() + 30
    while not any(status.get("unclean_stops") for status in read_status(store_root)):
        assert time.monotonic() < deadline, read_status(store_root)
        time.sleep(0.2)
    texts, cursor = _alerts(store_root, None)
    assert len(texts) == 1 and f"pid {killed.process.pid}" in texts[0], texts
    assert "stopped without its final flush" in texts[0] and "recovered from its write-ahead file" in texts[0]
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


def test_the_rows_a_killed_server_held_in_memory_are_written_by_the_next_once(project, records, start):
    # A flush every hour: every answered row is only in the killed server's memory (and its write-ahead file).
    settings = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    settings["serving"].update(log_flush_seconds=3600)
    (project / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    store_root = ArtifactStore(root=str(project / "var" / "storage")).root

    def logged() -> list[str]:
        days = logged_days(store_root)
        frames = [read_day(store_root, day) for day in days]
        return sorted(i for frame in frames if not frame.empty for i in frame["request_id"] if i.startswith("kill-"))

    killed = start("killed")
    ids = []
    for i in range(40):  # single rows and a batch of five
        rows = records[i : i + (5 if i == 39 else 1)]
        response = killed.predict(rows, headers={"X-Request-ID": f"kill-{i:03d}"})
        assert response.status_code == 200, response.text
        ids += [f"kill-{i:03d}"] if len(rows) == 1 else [f"kill-{i:03d}-{j}" for j in range(len(rows))]
    assert killed.metadata()["request_log"]["rows_pending"] == len(ids)  # in memory, none written
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait(timeout=30)
    assert logged() == []

    restarted = start("restarted")
    assert logged() == sorted(ids)  # every row once, written by the restarted server as it started
    [stop] = restarted.metadata()["request_log"]["unclean_stop_details"]
    assert stop["rows_recovered"] == len(ids) and stop["rows_lost"] == 0, stop
    reasons = [r for r in _health(restarted)["reasons"] if "without its final flush" in r]
    assert len(reasons) == 1 and f"{len(ids)} row(s) it had not written were recovered" in reasons[0], reasons
    restarted.process.terminate()  # a clean stop: nothing left to recover, nothing written twice
    restarted.process.wait(timeout=30)
    spool = next((project / load_params(project / "params.yaml").serving.log_spool_dir).iterdir())
    assert [p.name for p in (spool / "processes").iterdir()] == []
    again = start("again")
    assert again.metadata()["request_log"]["unclean_stops"] == 0
    assert logged() == sorted(ids)
