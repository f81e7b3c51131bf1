"""A loopback fake of the Vertex AI endpoint and model REST calls a rollout makes.

It serves `models:upload`, `GET models/{id}`, `endpoints?endpointId=`, `GET endpoints/{id}`,
`:deployModel`, `:undeployModel`, `PATCH ...?updateMask=trafficSplit` and `GET` of their operations
(done on the first read, as a slow deployment would be later), keeps every request body, and holds
Vertex's rules: a traffic split names deployed models only and sums to 100, a model is undeployed
only once it serves no traffic.
"""

from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOCATION = r"/v1/(?P<parent>projects/[^/]+/locations/[^/]+)"


def _error(status: HTTPStatus, message: str) -> tuple[int, dict[str, Any]]:
    return status.value, {"error": {"code": status.value, "message": message, "status": status.phrase}}


class FakeVertexEndpoints:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (method, path, body)
        self.models: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self._ids = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeVertexEndpoints:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _operation(self, parent: str, response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self._ids += 1
        name = f"{parent}/operations/{self._ids}"
        self.operations[name] = {"name": name, "done": True, "response": response}
        return 200, {"name": name, "done": False}

    @staticmethod
    def _check_split(endpoint: dict[str, Any], split: dict[str, int], new: bool = False) -> str | None:
        ids = {d["id"] for d in endpoint["deployedModels"]} | ({"0"} if new else set())
        unknown = sorted(set(split) - ids)
        if unknown:
            return f"trafficSplit names {unknown}, which are not deployed on {endpoint['name']}"
        if sum(split.values()) != 100 or any(not isinstance(v, int) for v in split.values()):
            return f"trafficSplit must be whole percentages summing to 100, got {split}"
        return None

    def handle(self, method: str, raw_path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        path, query = url.path, parse_qs(url.query)
        self.calls.append((method, raw_path, body))
        with self._lock:
            if method == "GET" and path.removeprefix("/v1/") in self.operations:
                return 200, self.operations[path.removeprefix("/v1/")]
            if found := re.fullmatch(LOCATION + r"/models:upload", path):
                name = f"{found['parent']}/models/{body['modelId']}"
                self.models[name] = {**body["model"], "name": name}
                return self._operation(found["parent"], {"model": name})
            if method == "GET" and re.fullmatch(LOCATION + r"/models/[^/:]+", path):
                name = path.removeprefix("/v1/")
                return (
                    (200, self.models[name])
                    if name in self.models
                    else _error(HTTPStatus.NOT_FOUND, f"{name} not found")
                )
            if method == "POST" and (found := re.fullmatch(LOCATION + r"/endpoints", path)):
                name = f"{found['parent']}/endpoints/{query['endpointId'][0]}"
                self.endpoints[name] = {"name": name, "displayName": body["displayName"], "deployedModels": []}
                return self._operation(found["parent"], {"name": name})
            found = re.fullmatch(r"/v1/(?P<name>" + LOCATION[4:] + r"/endpoints/[^/:]+)(?P<verb>:\w+)?", path)
            if not found or found["name"] not in self.endpoints:
                return _error(HTTPStatus.NOT_FOUND, f"{path} not found")
            endpoint, parent = self.endpoints[found["name"]], found["parent"]
            if method == "GET" and not found["verb"]:
                return 200, endpoint
            if method == "PATCH" and query.get("updateMask") == ["trafficSplit"]:
                problem = self._check_split(endpoint, body["trafficSplit"])
                if problem:
                    return _error(HTTPStatus.BAD_REQUEST, problem)
                endpoint["trafficSplit"] = body["trafficSplit"]
                return 200, endpoint
            if found["verb"] == ":deployModel":
                problem = self._check_split(endpoint, body["trafficSplit"], new=True)
                if problem:
                    return _error(HTTPStatus.BAD_REQUEST, problem)
                if body["deployedModel"]["model"] not in self.models:
                    return _error(HTTPStatus.NOT_FOUND, f"model {body['deployedModel']['model']} not found")
                self._ids += 1
                deployed = {**body["deployedModel"], "id": str(1000 + self._ids)}
                endpoint["deployedModels"].append(deployed)
                split = dict(body["trafficSplit"])
                split[deployed["id"]] = split.pop("0")
                endpoint["trafficSplit"] = split
                return self._operation(parent, {"deployedModel": {"id": deployed["id"]}})
            if found["verb"] == ":undeployModel":
                gone = body["deployedModelId"]
                remaining = [d for d in endpoint["deployedModels"] if d["id"] != gone]
                if len(remaining) == len(endpoint["deployedModels"]):
                    return _error(HTTPStatus.NOT_FOUND, f"deployed model {gone} not found")
                endpoint["deployedModels"] = remaining
                endpoint["trafficSplit"] = body.get("trafficSplit") or {}
                problem = self._check_split(endpoint, endpoint["trafficSplit"]) if remaining else None
                if problem:
                    return _error(HTTPStatus.BAD_REQUEST, problem)
                return self._operation(parent, {})
        return _error(HTTPStatus.NOT_FOUND, f"{method} {path} not found")

    def traffic(self, endpoint: str) -> dict[str, int]:
        """Share per model ID (its last path part) on the endpoint."""
        document = self.endpoints[endpoint]
        by_id = {d["id"]: d["model"].rsplit("/", 1)[-1] for d in document["deployedModels"]}
        return {by_id[i]: share for i, share in document.get("trafficSplit", {}).items()}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
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

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
