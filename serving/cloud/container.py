"""`python -m serving.cloud.container`: the model server a cloud endpoint runs, one registered version per container.

SageMaker variants, Vertex AI deployed models and Azure ML deployments each run one version
(serving/cloud/*_endpoint.py set its environment): the container loads `KEEL_MODEL_URI` (the
version's published copy in the artifact store), refusing it unless every file matches
`KEEL_MODEL_SHA256`, checks rows against params.yaml's dataset spec as `make serve` does, and answers

- `POST /predict` (Vertex AI, Azure ML) and `POST /invocations` (SageMaker) with `{"rows": [...]}`
  or Vertex's `{"instances": [...]}`: `{"predictions": [{"request_id", "score", "model_version"}]}`;
  a refused row is 422 naming row, column and value;
- `GET /health` and `GET /ping` (SageMaker): 200.

Every answer is logged to the artifact store's request log (`KEEL_STORE_ROOT`, the contract's
format), with its arm read from rollout.json (this version is the canary or the shadow while it is
the rollout's challenger, else the champion), so the sensor canary_bake judges a cloud canary as it
judges a local one. Port: `AIP_HTTP_PORT` (Vertex AI), else 8080.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small batches: OpenMP threads would only spin

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import fsspec  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from ml import io  # noqa: E402
from ml.params import load_params  # noqa: E402
from ml.predictor import Predictor  # noqa: E402
from serving.request_log import RequestLog, input_columns  # noqa: E402
from serving.scoring import rows_batch  # noqa: E402
from serving.state import RolloutState, RolloutStateError, read_state  # noqa: E402
from serving.validation import LimitError, RequestError, RowValidator  # noqa: E402

STATE_SECONDS = 5.0  # how often the arm is re-read from rollout.json


def load_model(uri: str, manifest_sha256: str) -> Predictor:
    """The published copy, downloaded when remote, verified file by file before it is parsed."""
    local = uri
    if io.is_remote(uri):
        fs, path = fsspec.core.url_to_fs(uri)
        local = f"/tmp/keel-model-{manifest_sha256[:12]}"
        fs.get(path.rstrip("/") + "/", local, recursive=True)
    return Predictor.load(Path(local), manifest_sha256, compiled=True)  # compiled locally, as batch scoring


class Arm:
    """This version's arm, from rollout.json, re-read every STATE_SECONDS (the last good one kept)."""

    def __init__(self, store_root: str, version: int):
        self.store_root, self.version = store_root, version
        self._state, self._read_at, self._lock = RolloutState(), 0.0, threading.Lock()

    def current(self) -> str:
        with self._lock:
            if time.monotonic() - self._read_at > STATE_SECONDS:
                with contextlib.suppress(RolloutStateError, OSError):  # a bad file: keep the last good state
                    self._state = read_state(self.store_root)
                self._read_at = time.monotonic()
            state = self._state
        if state.mode != "off" and state.challenger_version == self.version:
            return "shadow" if state.mode == "shadow" else "canary"
        return "champion"


def create_app(project_dir: Path, environ: dict[str, str] | None = None):
    environ = dict(os.environ if environ is None else environ)
    params = load_params(project_dir / "params.yaml")
    spec = params.dataset
    version, sha = int(environ["KEEL_MODEL_VERSION"]), environ["KEEL_MODEL_SHA256"]
    predictor = load_model(environ["KEEL_MODEL_URI"], sha)
    validator, columns = RowValidator(spec, params.serving.limits), input_columns(spec)
    store_root = environ.get("KEEL_STORE_ROOT")
    log = RequestLog(store_root, spec) if store_root else None
    arm = Arm(store_root, version) if store_root else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        try:
            yield
        finally:
            if log is not None:  # a clean stop (SIGTERM) writes the last rows, so none is lost or reported lost
                log.close()

    app = FastAPI(title="Keel model", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/health")
    @app.get("/ping")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": version, "manifest_sha256": sha}

    @app.post("/predict")
    @app.post("/invocations")
    async def predict(request: Request) -> JSONResponse:
        received, started = dt.datetime.now(dt.UTC), time.perf_counter()
        document = await request.json()
        rows = document.get("rows", document.get("instances")) if isinstance(document, dict) else None
        try:
            clean = validator.validate(rows)
        except LimitError as error:  # the platform bounds the body; the rows and ids are bounded here
            return JSONResponse({"error": str(error), "problems": [p.to_dict() for p in error.problems]}, 413)
        except RequestError as error:
            return JSONResponse({"error": str(error), "problems": [p.to_dict() for p in error.problems]}, 422)
        ids = [str(row.get("request_id") or uuid.uuid4()) for row in clean]
        scores = predictor.predict(rows_batch(clean, predictor))  # as `make serve` scores them
        latency = (time.perf_counter() - started) * 1000
        if log is not None:
            which = arm.current()
            log.append(
                {
                    "request_id": i,
                    "received_at": received,
                    "arm": which,
                    "model_version": version,
                    "manifest_sha256": sha,
                    "latency_ms": latency,
                    "status": 200,
                    "score": float(s),
                    "served": which != "shadow",
                    **{c: row.get(c) for c in columns},
                }
                for i, s, row in zip(ids, scores, clean, strict=True)
            )
        predictions = [
            {"request_id": i, "score": float(s), "model_version": version} for i, s in zip(ids, scores, strict=True)
        ]
        return JSONResponse({"predictions": predictions})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.cloud.container", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", help="ignored: SageMaker starts the image with `serve`")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="the folder of params.yaml")
    args = parser.parse_args(argv)
    import uvicorn

    port = int(os.environ.get("AIP_HTTP_PORT", "8080"))
    uvicorn.run(create_app(args.project_dir.resolve()), host="0.0.0.0", port=port, workers=1)  # noqa: S104
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
