"""`python -m serving [--project-dir .] [--host H] [--port P]`: the real-time endpoint (`make serve`).

Serves the registry's `champion` (and the challenger per the rollout state) of the deployment that
KEEL_DEPLOYMENT picks, as Dagster's resources see it: the same registry and artifact store. One
uvicorn worker process: the scorer batches concurrent requests on one thread, and on 2 cores a
second process would only compete with the first for the same cores (and double the models in memory).
"""

from __future__ import annotations

import os

# Requests are scored in small batches: LightGBM's OpenMP threads would spin for the cores the event
# loop needs (a 1-row predict takes ~8 ms with them on a busy 2-core machine, ~0.15 ms without).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The poller asks the registry again every poll_seconds: MLflow's own retries (7, backing off for minutes)
# would only hide an unreachable tracking server from /health and keep a moved alias unfollowed for
# minutes after the server is back. One try, 10 s at most, and the failure is reported at once.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import argparse  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import uvicorn  # noqa: E402

from ml.params import load_params  # noqa: E402


def build_app(project_dir: Path):
    from orchestration.deployments import resources_for
    from serving.app import ServerParts, create_app
    from serving.models import ModelPoller, ModelSource
    from serving.request_log import RequestLog

    params = load_params(project_dir / "params.yaml")
    resources = resources_for(root=project_dir)
    registry, store = resources["registry"], resources["storage"]
    source = ModelSource(registry, store, params.model_name, compiled=params.scoring.compiled)
    poller = ModelPoller(source, store.root, params.serving.poll_seconds)
    log = RequestLog(
        store.root,
        params.dataset,
        flush_seconds=params.serving.log_flush_seconds,
        flush_rows=params.serving.log_flush_rows,
        spool_dir=project_dir / params.serving.log_spool_dir,
        spool_max_mb=params.serving.log_spool_max_mb,
    )
    return create_app(ServerParts(params.dataset, poller, log, params.model_name, params.serving.limits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="the project folder (params.yaml)")
    parser.add_argument("--host", help="default: params.yaml serving.host")
    parser.add_argument("--port", type=int, help="default: params.yaml serving.port")
    args = parser.parse_args(argv)
    project_dir = args.project_dir.resolve()
    settings = load_params(project_dir / "params.yaml").serving
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        build_app(project_dir),
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,  # every request is in the request log already
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
