"""The canary story on the real endpoint: `python -m serving` answers over HTTP, start_canary tries a bad
challenger, the sensor canary_bake ticks on the request log the server wrote, traffic returns to the
champion, and the alias history says why.

The bad challenger is a LightGBM model trained on shuffled labels: it loads, verifies and answers
fast, but its scores bunch around the base rate, so its score drift against the champion's is far
beyond the calibrated threshold.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import orjson
import yaml

from ml.params import load_params
from ml.split import split_rows, training_features
from ml.train import train_artifact
from orchestration.definitions import definitions
from orchestration.deployments import local
from resources.registry import CHALLENGER
from serving.request_log import read_day
from serving.state import read_state
from tests.serving.project import REPO, example_rows, make_project

ROLLOUT = {"bake_minutes": 0, "min_requests": 100, "canary_percent": 40}


def shuffled_label_model(root: Path) -> int:
    """Register a model that learned nothing (labels permuted); its version."""
    from ml.example_data import example_frame
    from ml.ingest import with_ids
    from ml.sources import as_text

    params = load_params(root / "params.yaml")
    spec, config = params.dataset, params.training.resolve()
    raw = with_ids(example_frame(spec.name), spec)
    for column in spec.text_columns:
        raw[column] = as_text(raw[column])
    rows = split_rows(raw, spec, fraction=config.holdout_fraction, seed=config.seed)
    table, state = training_features(rows, spec, params.features)
    table["label"] = np.random.default_rng(0).permutation(table["label"].to_numpy())
    registry = local(root)["registry"]
    with tempfile.TemporaryDirectory(prefix="keel-bad-model-") as tmp:
        report = train_artifact(table, state.to_dict(), config, Path(tmp))
        run_id = registry.log_training_run(params.model_name, "shuffled", {}, report["metrics"], {}, tmp)
    return registry.register(params.model_name, run_id, {"manifest_sha256": report["manifest_sha256"]})


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "server.log", "wb")  # noqa: SIM115 - the process owns it until it stops
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--project-dir", str(root), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, (root / "server.log").read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, (root / "server.log").read_text()
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, condition, what: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = httpx.get(f"{url}/metadata", timeout=10).json()
        if condition(metadata):
            return metadata
        time.sleep(0.1)
    raise AssertionError(f"the server did not {what} within {timeout:.0f} s")


def send(url: str, records: list[dict], prefix: str) -> dict[str, int]:
    """Every record as its own request id, in batches; id -> the version that answered."""
    answered = {}
    for start in range(0, len(records), 50):
        rows = [{**r, "request_id": f"{prefix}-{start + n}"} for n, r in enumerate(records[start : start + 50])]
        response = httpx.post(f"{url}/predict", json={"rows": rows}, timeout=30)
        assert response.status_code == 200, response.text
        answered |= {p["request_id"]: p["model_version"] for p in response.json()["predictions"]}
    return answered


def test_a_bad_canary_on_the_live_endpoint_is_rolled_back_by_the_sensor(tmp_path):
    root = tmp_path / "project"
    make_project(root)  # v1 champion, v2 another family
    settings = yaml.safe_load((root / "params.yaml").read_text())
    settings["serving"].update(poll_seconds=0.2, log_flush_seconds=0.2, rollout=ROLLOUT)
    (root / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    bad = shuffled_label_model(root)
    records = orjson.loads(example_rows().head(1200).to_json(orient="records"))
    resources = local(root)
    defs, registry, store = definitions(resources), resources["registry"], resources["storage"].root
    name = registry.model_name

    process, url = start_server(root)
    try:
        with dg.instance_for_test() as instance:
            started = defs.resolve_job_def("start_canary").execute_in_process(
                run_config={"ops": {"start_rollout": {"config": {"version": bad, "reason": "try the new model"}}}},
                instance=instance,
            )
            assert started.success
            wait_for(url, lambda m: m["mode"] == "canary" and m["challenger"]["version"] == bad, "start the canary")

            answered = send(url, records[:800], "live")
            assert {1, bad} == set(answered.values())  # both arms answered callers
            day = dt.datetime.now(dt.UTC).date()
            deadline = time.monotonic() + 30
            while len(read_day(store, day)) < 800:
                assert time.monotonic() < deadline, "the server did not write its request log"
                time.sleep(0.2)

            with dg.build_sensor_context(
                instance=instance, sensor_name="canary_bake", definitions=defs, resources=resources
            ) as context:
                result = defs.resolve_sensor_def("canary_bake").evaluate_tick(context)
            [request] = result.run_requests
            config = request.run_config["ops"]["conclude"]["config"]
            assert config["outcome"] == "rollback" and "score drift" in config["reason"], config["reason"]
            assert read_state(store).mode == "off"

            wait_for(url, lambda m: m["mode"] == "off", "return to the champion")
            after = send(url, records[800:1000], "after")
            assert set(after.values()) == {1}  # every caller is answered by the champion again

            assert (
                defs.resolve_job_def("conclude_rollout")
                .execute_in_process(run_config=request.run_config, instance=instance)
                .success
            )
            last = registry.alias_history(name, CHALLENGER)[-1]
            assert (last.kind, last.from_version, last.to_version) == ("rollback", bad, None)
            assert "score drift" in last.reason and registry.champion() == 1
    finally:
        process.terminate()
        process.wait(timeout=30)
