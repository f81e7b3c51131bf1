"""Fakes for the Vertex AI backend: the GCS emulator, and a loopback fake of the CustomJob REST API.

No Vertex AI emulator exists. `FakeVertex` serves the calls the backend makes
(`POST /v1/projects/{p}/locations/{l}/customJobs`, `GET /v1/{name}`, `POST /v1/{name}:cancel`) on a
free 127.0.0.1 port, keeps every request body, and plays the job the way Vertex would: it runs the
worker pools' container command (`python -m ml.train ...`), one subprocess per replica (with its CLUSTER_SPEC), with the container
environment the request sent plus the AIP_* variables Vertex derives from `baseOutputDirectory`
and what the job's service account would provide (the emulator's address), then reports
JOB_STATE_PENDING -> JOB_STATE_RUNNING -> JOB_STATE_SUCCEEDED / JOB_STATE_FAILED. Nothing of the
test process's environment reaches the job but PATH and HOME, as in a real container.

Knobs for the failure paths: `fail_next` makes the next job fail without running (an infrastructure
error, with that message), `fail_replica` makes one replica of a job exit 1, `hold` keeps jobs running until they are cancelled, and a project named
in `denied_projects` gets the 403 Vertex answers without aiplatform.customJobs.create, and
`unavailable_reads` answers that many job reads with 503.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import REPO

PROJECT_NUMBER = "123456789012"  # Vertex names resources by project number, not ID
CREATE = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/customJobs$")
JOB = re.compile(r"^/v1/(?P<name>projects/[^/]+/locations/[^/]+/customJobs/\d+)(?P<cancel>:cancel)?$")


class GcsEmulator:
    """gcp-storage-emulator's in-memory server in a thread on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        self.server = create_server("127.0.0.1", 0, in_memory=True)

    def start(self) -> str:
        self.server.start()
        host, port = self.server._api._httpd.server_address  # bound by the thread; port 0 picked a free one
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.stop()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: HTTPStatus, message: str, reason: str) -> tuple[int, dict[str, Any]]:
    return status.value, {"error": {"code": status.value, "message": message, "status": reason}}


class FakeJob:
    def __init__(self, name: str, body: dict[str, Any]) -> None:
        self.name = name
        self.body = body
        self.state = "JOB_STATE_PENDING"
        self.error: dict[str, Any] | None = None
        self.process: subprocess.Popen | None = None
        self.stdout = ""
        self.stderr = ""
        self.create_time = _now()
        self.times: dict[str, str] = {}  # startTime / endTime, as Vertex sets them when the job starts and ends

    def resource(self) -> dict[str, Any]:
        document = {**self.body, "name": self.name, "state": self.state, "createTime": self.create_time, **self.times}
        if self.error:
            document["error"] = self.error
        return document


class FakeVertex:
    def __init__(self, job_env: dict[str, str], work_dir: Path) -> None:
        self.job_env = job_env  # what the job's service account and network would provide
        self.work_dir = work_dir
        self.requests: list[dict[str, Any]] = []
        self.calls: list[str] = []  # "METHOD path", in order
        self.jobs: dict[str, FakeJob] = {}
        self.fail_next: str | None = None
        self.fail_replica: tuple[str, int] | None = None  # ("workerpool1", 0): that replica exits 1
        self.hold = False
        self.denied_projects: set[str] = set()
        self.unavailable_reads = 0  # the next N job reads answer 503, as Google's front end sometimes does
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeVertex:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for job in self.jobs.values():
            if job.process and job.process.poll() is None:
                job.process.kill()
                job.process.wait()

    def wait_for_jobs(self, timeout: float = 300) -> None:
        for job in list(self.jobs.values()):
            if job.process:
                job.process.wait(timeout=timeout)

    # --- the API -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append(f"{method} {path}")
        created = CREATE.match(path)
        if method == "POST" and created:
            return self._create(created["project"], created["location"], body)
        found = JOB.match(path)
        if found and found["name"] in self.jobs:
            job = self.jobs[found["name"]]
            if method == "GET" and not found["cancel"]:
                if self.unavailable_reads > 0:
                    self.unavailable_reads -= 1
                    return _error(
                        HTTPStatus.SERVICE_UNAVAILABLE, "The service is currently unavailable.", "UNAVAILABLE"
                    )
                return 200, job.resource()
            if method == "POST" and found["cancel"]:
                self._cancel(job)
                return 200, {}
        return _error(HTTPStatus.NOT_FOUND, f"{path} was not found.", "NOT_FOUND")

    def _create(self, project: str, location: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append(json.loads(json.dumps(body)))
        if project in self.denied_projects:
            message = f"Permission 'aiplatform.customJobs.create' denied on resource '//aiplatform.googleapis.com/projects/{project}/locations/{location}' (or it may not exist)."
            return _error(HTTPStatus.FORBIDDEN, message, "PERMISSION_DENIED")
        invalid = HTTPStatus.BAD_REQUEST
        try:
            pool = body["jobSpec"]["workerPoolSpecs"][0]
            container = pool["containerSpec"]
        except (KeyError, IndexError, TypeError):
            return _error(invalid, "jobSpec.workerPoolSpecs[0].containerSpec is required.", "INVALID_ARGUMENT")
        required = {
            "displayName": body.get("displayName"),
            "containerSpec.imageUri": container.get("imageUri"),
            "machineSpec.machineType": (pool.get("machineSpec") or {}).get("machineType"),
        }
        missing = [field for field, value in required.items() if not value]
        if missing:
            return _error(invalid, f"Missing required fields {missing}.", "INVALID_ARGUMENT")
        if len(container.get("env", [])) > 100:
            return _error(invalid, "At most 100 environment variables are allowed.", "INVALID_ARGUMENT")
        with self._lock:
            name = f"projects/{PROJECT_NUMBER}/locations/{location}/customJobs/{1000 + len(self.jobs)}"
            job = self.jobs[name] = FakeJob(name, body)
        if self.fail_next is not None:
            job.state, job.error = "JOB_STATE_FAILED", {"code": 8, "message": self.fail_next}
            self.fail_next = None
        elif self.hold:
            job.state = "JOB_STATE_RUNNING"
        else:
            threading.Thread(target=self._play, args=(job,), daemon=True).start()
        return 200, job.resource()

    def _cancel(self, job: FakeJob) -> None:
        if job.state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            return
        job.state = "JOB_STATE_CANCELLING"
        if job.process and job.process.poll() is None:
            job.process.terminate()
        job.state, job.error = "JOB_STATE_CANCELLED", {"code": 1, "message": "CANCELED"}

    # --- the container -------------------------------------------------------------------------

    def _play(self, job: FakeJob) -> None:
        """Every replica of every worker pool at once, each told its place by CLUSTER_SPEC, as Vertex does;
        the job fails when one replica fails."""
        spec = job.body["jobSpec"]
        pools = spec["workerPoolSpecs"]
        cluster = {
            f"workerpool{i}": [f"workerpool{i}-{r}:2222" for r in range(p.get("replicaCount", 1))]
            for i, p in enumerate(pools)
        }
        replicas = [(i, r) for i, pool in enumerate(pools) for r in range(pool.get("replicaCount", 1))]
        processes = [self._start_replica(job, pools[i]["containerSpec"], cluster, i, r) for i, r in replicas]
        job.process = processes[0]
        job.state, job.times["startTime"] = "JOB_STATE_RUNNING", _now()
        outputs = [process.communicate() for process in processes]
        job.times["endTime"] = _now()
        job.stdout, job.stderr = outputs[0]
        if job.state != "JOB_STATE_RUNNING":  # cancelled meanwhile
            return
        failed = [
            (replica, p.returncode, out)
            for replica, p, out in zip(replicas, processes, outputs, strict=True)
            if p.returncode
        ]
        if not failed:
            job.state = "JOB_STATE_SUCCEEDED"
        else:
            (pool, index), code, (_, stderr) = failed[0]
            job.state = "JOB_STATE_FAILED"
            job.stderr = stderr
            job.error = {
                "code": 3,
                "message": f"The replica workerpool{pool}-{index} exited with a non-zero status of {code}. "
                "To find out more about why your job exited please check the logs.",
            }

    def _start_replica(
        self, job: FakeJob, container: dict[str, Any], cluster: dict[str, Any], pool: int, index: int
    ) -> subprocess.Popen:
        spec = job.body["jobSpec"]
        base = (spec.get("baseOutputDirectory") or {}).get("outputUriPrefix", "").rstrip("/")
        home = self.work_dir / job.name.rsplit("/", 1)[-1] / f"workerpool{pool}-{index}"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home),
            **self.job_env,
            **{item["name"]: item["value"] for item in container.get("env", [])},
            "CLOUD_ML_PROJECT_ID": job.name.split("/")[1],
            "CLUSTER_SPEC": json.dumps({"cluster": cluster, "task": {"type": f"workerpool{pool}", "index": index}}),
        }
        if base:  # what Vertex derives from baseOutputDirectory
            env |= {
                "AIP_MODEL_DIR": f"{base}/model/",
                "AIP_CHECKPOINT_DIR": f"{base}/checkpoints/",
                "AIP_TENSORBOARD_LOG_DIR": f"{base}/logs/",
            }
        command = [*container.get("command", []), *container.get("args", [])]
        command[0] = sys.executable if command[0] == "python" else command[0]
        if self.fail_replica == (f"workerpool{pool}", index):
            command = [sys.executable, "-c", "raise SystemExit('this replica fails')"]
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    status, document = _error(HTTPStatus.BAD_REQUEST, "Invalid JSON payload.", "INVALID_ARGUMENT")
                else:
                    status, document = fake.handle(method, self.path, body)
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
