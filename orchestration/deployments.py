"""Resources per deployment, chosen by one environment variable (KEEL_DEPLOYMENT, `local` by default)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resources.compute import LocalCompute
from resources.dvc import DvcResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

DEPLOYMENT_VARIABLE = "KEEL_DEPLOYMENT"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def local(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Everything on this machine: the DVC repo, artifacts under var/storage, MLflow under var/mlflow.

    MLFLOW_TRACKING_URI, when set, points tracking and the registry at another MLflow instead.
    """
    return {
        "dvc": DvcResource(repo_dir=str(root)),
        "storage": ArtifactStore(root=str(root / "var" / "storage")),
        "compute": LocalCompute(working_dir=str(root)),
        "registry": ModelRegistry(root=str(root / "var" / "mlflow")),
    }


DEPLOYMENTS: dict[str, Callable[[], dict[str, Any]]] = {"local": local}


def deployment_name() -> str:
    return os.environ.get(DEPLOYMENT_VARIABLE, "local").strip() or "local"


def resources_for(name: str | None = None) -> dict[str, Any]:
    name = name or deployment_name()
    if name not in DEPLOYMENTS:
        raise ValueError(
            f"{DEPLOYMENT_VARIABLE}={name!r} is not a known deployment; known deployments: {', '.join(sorted(DEPLOYMENTS))}"
        )
    return DEPLOYMENTS[name]()
