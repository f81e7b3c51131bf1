"""Azure without Azure: Azurite for Blob, and a loopback fake of the Azure ML job API.

`Azurite` runs the project-local `azurite-blob` (npm, pinned) on a free 127.0.0.1 port, in memory.
Its account name and key are Azurite's published development credentials, valid nowhere else.

`FakeAzureML` is a small stdlib HTTP server that the real `MLClient` (driven by `AzureMLCompute`)
talks to instead of Azure Resource Manager. It records every request and plays the compute cluster
for command jobs:

- `PUT .../workspaces/{ws}/jobs/{name}` stores the job and runs its command locally in a thread,
  as Azure ML would: inputs (`azureml://datastores/{ds}/paths/...`) are downloaded from Azurite
  to a scratch folder, an empty folder is created for each output, `${{inputs.x}}` /
  `${{outputs.y}}` in the command are replaced by those paths, the command runs under `bash -c`
  in an empty working folder, with the "image" set up as the Dockerfile sets it (this interpreter's
  environment first on PATH, the project folder on PYTHONPATH) and with the
  job's environment variables plus the compute's storage identity (here Azurite's connection
  string, which the request never carries), and upload-mode outputs go back to Azurite on success.
  The scratch folder is removed afterwards: nothing the job wrote is left on "the node".
- `GET .../jobs/{name}` answers the job with its status (Queued, Running, Completed, Failed, Canceled).
- `POST .../jobs/{name}/cancel` stops the process; the job ends Canceled.
- `PUT .../environments/{name}/versions/{v}` (anonymous image environments) is echoed.
- The workspace GET, its discovery document and run history's `runs/{name}/details` give the error of
  a failed job (the last lines of its stderr, as Azure ML shows in the job's error).
Anything else is answered 404 and recorded in `unexpected`, which tests assert is empty.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Azurite's well-known development account (public, documented by Microsoft; works only against Azurite).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

VENV_BIN = str(Path(sys.executable).parent)
WORKSPACE_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/?]+)(?P<rest>/[^?]*)?$"
)
PLACEHOLDER = re.compile(r"\$\{\{(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\}\}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_certificate(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key (PEM files in `folder`); the certificate is its own CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fake-azureml.crt", folder / "fake-azureml.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


class Azurite:
    """`azurite-blob` on a free loopback port, in memory; stop() ends the process."""

    def __init__(self, executable: Path, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "azurite.log"
        command = [
            str(executable),
            *("--blobHost", "127.0.0.1", "--blobPort", str(self.port)),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]
        env = {**os.environ, "PATH": f"{Path(executable).parent}{os.pathsep}{os.environ['PATH']}"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait()

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.account_url};"
        )

    def _wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"azurite-blob exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"azurite-blob did not listen on 127.0.0.1:{self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Job:
    name: str
    body: dict[str, Any]
    status: str = "Queued"
    error: str | None = None
    process: subprocess.Popen | None = None
    cancel_requested: bool = False
    stdout: str = ""
    stderr: str = ""
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Request:
    method: str
    path: str
    body: Any


class FakeAzureML:
    """The Azure ML job API on a free loopback port; runs command jobs against Azurite (see module docstring)."""

    def __init__(
        self,
        connection_string: str,
        datastores: dict[str, str],
        image_dir: Path,
        certificate_dir: Path,
        *,
        job_env: dict[str, str] | None = None,
        start_delay: float = 0.0,
    ) -> None:
        self.connection_string = connection_string
        self.datastores = datastores  # datastore name -> Azurite container
        self.image_dir = image_dir
        self.job_env = job_env or {}
        self.start_delay = start_delay  # seconds a job stays Queued (room to cancel it)
        self.fail_node: int | None = None  # that node's command exits 1
        self.jobs: dict[str, Job] = {}
        self.requests: list[Request] = []
        self.unexpected: list[Request] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # HTTPS like Azure: the SDK sends bearer tokens over TLS only. Clients trust `ca_bundle`.
        self.ca_bundle, key = self_signed_certificate(certificate_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_bundle, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_port}/"

    def stop(self) -> None:
        for job in self.jobs.values():
            if job.process is not None and job.process.poll() is None:
                os.killpg(job.process.pid, signal.SIGKILL)
            job.done.wait(timeout=30)
        self.server.shutdown()
        self.server.server_close()

    def job_puts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "PUT" and "/jobs/" in r.path]

    # ---- HTTP ----

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _read(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _send(self, status: int, document: Any = None) -> None:
                payload = json.dumps(document).encode() if document is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _dispatch(self, method: str) -> None:
                body = self._read() if method in {"PUT", "POST"} else None
                request = Request(method, self.path, body)
                fake.requests.append(request)
                status, document = fake.answer(request, f"https://{self.headers.get('Host')}")
                if status == 404:
                    fake.unexpected.append(request)
                self._send(status, document)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def do_POST(self) -> None:
                self._dispatch("POST")

        return Handler

    def answer(self, request: Request, base: str) -> tuple[int, Any]:
        path = urllib.parse.urlsplit(request.path).path
        if path == "/discovery":
            return 200, {"api": base, "history": base, "catalog": base, "experimentation": base}
        history = re.match(r"^/history/v1\.0(/subscriptions/.*)/runs/([^/]+)/details$", path)
        if history and request.method == "GET" and history.group(2) in self.jobs:
            job = self.jobs[history.group(2)]
            error = {"error": {"code": "UserError", "message": job.error}} if job.error else None
            return 200, {"runId": job.name, "status": job.status, "error": error}
        match = WORKSPACE_PATH.match(path)
        if not match:
            return 404, {"error": {"code": "NotFound", "message": f"fake: no route for {request.method} {path}"}}
        workspace_id, rest = path[: match.start("rest")] if match.group("rest") else path, match.group("rest") or ""
        if rest == "" and request.method == "GET":
            properties = {"discoveryUrl": f"{base}/discovery"}
            return 200, {"id": workspace_id, "name": match.group("ws"), "location": "local", "properties": properties}
        parts = rest.strip("/").split("/")
        if parts[0] == "environments" and request.method == "PUT":
            return 201, {**request.body, "id": path, "name": parts[-1]}
        if parts[0] == "jobs" and len(parts) == 2 and request.method == "PUT":
            job = self._submit(parts[1], request.body)
            return 201, self._job_document(job, workspace_id)
        if parts[0] == "jobs" and len(parts) == 2 and request.method == "GET" and parts[1] in self.jobs:
            return 200, self._job_document(self.jobs[parts[1]], workspace_id)
        if parts[0] == "jobs" and len(parts) == 3 and parts[2] == "cancel" and parts[1] in self.jobs:
            self._cancel(self.jobs[parts[1]])
            return 202, None
        return 404, {"error": {"code": "NotFound", "message": f"fake: no route for {request.method} {path}"}}

    def _job_document(self, job: Job, workspace_id: str) -> dict[str, Any]:
        properties = {**job.body["properties"], "status": job.status}
        return {"id": f"{workspace_id}/jobs/{job.name}", "name": job.name, "type": "jobs", "properties": properties}

    # ---- the "compute cluster" ----

    def _submit(self, name: str, body: dict[str, Any]) -> Job:
        job = Job(name=name, body=body)
        self.jobs[name] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return job

    def _cancel(self, job: Job) -> None:
        job.cancel_requested = True
        if job.process is not None and job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGTERM)

    def _run(self, job: Job) -> None:
        scratch = Path(tempfile.mkdtemp(prefix=f"fake-azureml-{job.name}-"))
        try:
            time.sleep(self.start_delay)
            if job.cancel_requested:
                job.status = "Canceled"
                return
            job.status = "Running"
            properties = job.body["properties"]
            if properties.get("jobType") != "Command":
                raise ValueError(f"fake: only command jobs run here, not {properties.get('jobType')}")
            inputs = {("inputs", k): self._download(k, v, scratch / "inputs") for k, v in properties["inputs"].items()}
            nodes = (properties.get("resources") or {}).get("instanceCount") or 1
            distribution = properties.get("distribution") or {}
            if nodes > 1 and (distribution.get("distributionType"), distribution.get("processCountPerInstance")) != (
                "PyTorch",
                1,
            ):
                raise ValueError(f"fake: a job on {nodes} nodes needs one PyTorch process per node, got {distribution}")
            started = [
                self._start_node(job, properties, inputs, scratch / f"node-{rank}", rank) for rank in range(nodes)
            ]
            job.process = started[0][0]  # what a cancel stops (the fake's cancel tests run one node)
            results = [(process, *process.communicate(), outputs) for process, outputs in started]
            job.stdout, job.stderr = results[0][1], results[0][2]
            failed = [r for r in results if r[0].returncode != 0]
            if job.cancel_requested:
                job.status = "Canceled"
            elif failed:
                process, _, stderr, _ = failed[0]
                tail = "\n".join(stderr.strip().splitlines()[-5:])
                job.error = (
                    f"Execution failed. User process 'bash' exited with status code {process.returncode}. "
                    f"Please check log file 'user_logs/std_log.txt' for error details. Error: {tail}"
                )
                job.status = "Failed"
            else:
                for *_, outputs in results:  # every node uploads its own output folders
                    for key, output in properties.get("outputs", {}).items():
                        self._upload(outputs[("outputs", key)], output["uri"])
                job.status = "Completed"
        except Exception as error:  # the fake's own problems show up as a failed job with the reason
            job.error = f"{type(error).__name__}: {error}"
            job.status = "Failed"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            job.done.set()

    def _start_node(
        self, job: Job, properties: dict[str, Any], inputs: dict, scratch: Path, rank: int
    ) -> tuple[subprocess.Popen, dict]:
        """One node of the job: its own output folders and working folder, NODE_RANK as Azure ML sets it."""
        paths = dict(inputs)
        for key, output in properties.get("outputs", {}).items():
            if output.get("mode") != "Upload" or output.get("jobOutputType") != "uri_folder":
                raise ValueError(f"fake: output {key!r} must be an Upload uri_folder, got {output}")
            paths[("outputs", key)] = scratch / "outputs" / key
            paths[("outputs", key)].mkdir(parents=True)  # Azure ML creates an output's folder

        def placeholder(found: re.Match) -> str:
            kind, key = found.group(1), found.group(2)
            if (kind, key) not in paths:
                raise ValueError(f"fake: the command names {found.group(0)}, which the job does not declare")
            return str(paths[(kind, key)])

        command = PLACEHOLDER.sub(placeholder, properties["command"])
        if rank == self.fail_node:
            command = "echo 'this node fails' >&2; exit 1"
        workdir = scratch / "wd"  # Azure ML runs the command in a working folder of its own
        workdir.mkdir(parents=True)
        env = {
            # The image's environment (Dockerfile): its interpreter first on PATH, the project on PYTHONPATH.
            "PATH": f"{VENV_BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(self.image_dir),
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            **properties.get("environmentVariables", {}),
            **self.job_env,
            "AZURE_STORAGE_CONNECTION_STRING": self.connection_string,  # the compute's storage identity
        }
        if (properties.get("resources") or {}).get("instanceCount", 1) > 1:
            env |= {"NODE_RANK": str(rank), "RANK": str(rank), "LOCAL_RANK": "0"}
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        return process, paths

    def _container_path(self, uri: str) -> tuple[str, str]:
        found = re.match(r"^azureml://datastores/([^/]+)/paths/(.*)$", uri)
        if not found or found.group(1) not in self.datastores:
            raise ValueError(f"fake: {uri!r} is not a path on a known datastore {sorted(self.datastores)}")
        return self.datastores[found.group(1)], found.group(2)

    def _download(self, key: str, binding: dict[str, Any], folder: Path) -> Path:
        from azure.storage.blob import ContainerClient

        container, path = self._container_path(binding["uri"])
        client = ContainerClient.from_connection_string(self.connection_string, container)
        target = folder / key
        target.mkdir(parents=True)
        if binding["jobInputType"] == "uri_file":
            local = target / path.rsplit("/", 1)[-1]
            local.write_bytes(client.download_blob(path).readall())
            return local
        prefix = path.rstrip("/") + "/"
        for blob in client.list_blobs(name_starts_with=prefix):
            local = target / blob.name[len(prefix) :]
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(client.download_blob(blob.name).readall())
        return target

    def _upload(self, folder: Path, uri: str) -> None:
        from azure.storage.blob import ContainerClient

        container, path = self._container_path(uri)
        client = ContainerClient.from_connection_string(self.connection_string, container)
        for local in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f"{path.rstrip('/')}/{local.relative_to(folder).as_posix()}".lstrip("/")
            # As Azure ML's upload mode does (an assumption the fake cannot prove, see docs/cloud.md): a file of
            # the same name at the output path is replaced. The backend itself refuses existing artifact folders.
            client.upload_blob(name, local.read_bytes(), overwrite=True)
