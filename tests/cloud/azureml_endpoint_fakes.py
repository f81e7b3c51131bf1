"""A loopback fake (HTTPS, like Azure) of the Azure ML online endpoint calls a rollout makes over ARM.

It serves PUT/GET of the endpoint, PUT/GET/DELETE and the listing of its deployments, PUT/GET of
environment versions, keeps every request, and holds Azure ML's rules: traffic and mirrorTraffic
name existing deployments only, traffic sums to 100 (or is empty), a mirror takes at most 50 % and
never a deployment that has traffic, and a deployment with traffic cannot be deleted.
Resources are provisioned at once (provisioningState Succeeded); `refuse_deployments` plays a quota refusal.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.cloud.azure_fakes import self_signed_certificate

ENDPOINT = re.compile(r"^(?P<ws>/subscriptions/.+/workspaces/[^/]+)/onlineEndpoints/(?P<e>[^/]+)(?P<rest>/.*)?$")
ENVIRONMENT = re.compile(r"^/subscriptions/.+/workspaces/[^/]+/environments/[^/]+/versions/[^/]+$")


class FakeAzureMLEndpoints:
    def __init__(self, certificate_dir: Path) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, dict[str, Any]]] = {}
        self.environments: dict[str, dict[str, Any]] = {}
        self.refuse_deployments: str | None = None  # a message: the next deployment PUTs are refused with it
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.ca_bundle, key = self_signed_certificate(certificate_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_bundle, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_port}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def traffic(self, name: str) -> tuple[dict[str, int], dict[str, int]]:
        properties = self.endpoints[name]["properties"]
        return properties["traffic"], properties["mirrorTraffic"]

    def _check(self, name: str, properties: dict[str, Any]) -> str | None:
        existing = set(self.deployments.get(name, {}))
        traffic, mirror = properties.get("traffic") or {}, properties.get("mirrorTraffic") or {}
        unknown = sorted((set(traffic) | set(mirror)) - existing)
        if unknown:
            return f"deployments {unknown} do not exist on endpoint {name}"
        if traffic and sum(traffic.values()) != 100:
            return f"traffic must sum to 100, got {traffic}"
        if any(v > 50 for v in mirror.values()) or set(mirror) & {d for d, v in traffic.items() if v > 0}:
            return f"mirrorTraffic {mirror} must be at most 50 % and go to a deployment without live traffic"
        return None

    def answer(self, method: str, raw: str, body: Any) -> tuple[int, Any]:
        path = urllib.parse.urlsplit(raw).path
        if ENVIRONMENT.match(path):
            if method == "PUT":
                self.environments[path] = {**body, "id": path, "name": path.rsplit("/", 1)[-1]}
                return 201, self.environments[path]
            return (
                (200, self.environments[path]) if path in self.environments else (404, {"error": {"code": "NotFound"}})
            )
        found = ENDPOINT.match(path)
        if not found:
            return 404, {"error": {"code": "NotFound", "message": f"fake: no route for {method} {path}"}}
        name, rest = found["e"], found["rest"] or ""
        if rest == "":
            if method == "PUT":
                problem = self._check(name, body["properties"])
                if problem:
                    return 400, {"error": {"code": "BadRequest", "message": problem}}
                properties = {**body["properties"], "provisioningState": "Succeeded"}
                self.endpoints[name] = {**body, "name": name, "properties": properties}
                self.deployments.setdefault(name, {})
                return 201, self.endpoints[name]
            return (200, self.endpoints[name]) if name in self.endpoints else (404, {"error": {"code": "NotFound"}})
        if name not in self.endpoints:
            return 404, {"error": {"code": "NotFound", "message": f"endpoint {name} not found"}}
        deployments = self.deployments[name]
        if rest == "/deployments" and method == "GET":
            return 200, {"value": list(deployments.values())}
        deployment = rest.removeprefix("/deployments/")
        if method == "PUT" and self.refuse_deployments:
            return 400, {"error": {"code": "QuotaExceeded", "message": self.refuse_deployments}}
        if method == "PUT":
            if body["properties"]["environmentId"] not in {p.lstrip("/") for p in self.environments}:
                return 400, {"error": {"code": "BadRequest", "message": "environment not found"}}
            properties = {**body["properties"], "provisioningState": "Succeeded"}
            deployments[deployment] = {**body, "name": deployment, "properties": properties}
            return 201, deployments[deployment]
        if method == "GET":
            return (
                (200, deployments[deployment]) if deployment in deployments else (404, {"error": {"code": "NotFound"}})
            )
        if method == "DELETE" and deployment in deployments:
            traffic, mirror = self.traffic(name)
            if traffic.get(deployment, 0) > 0 or deployment in mirror:
                return 400, {"error": {"code": "BadRequest", "message": f"{deployment} still has traffic"}}
            del deployments[deployment]
            return 202, None
        return 404, {"error": {"code": "NotFound", "message": f"fake: no route for {method} {path}"}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _dispatch(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((method, self.path, body))
                status, document = fake.answer(method, self.path, body)
                payload = json.dumps(document).encode() if document is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

        return Handler
