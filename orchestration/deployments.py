"""Resources per deployment, chosen by one environment variable (KEEL_DEPLOYMENT, `local` by default).

A deployment is one function `(root, environ) -> resource dict` in `DEPLOYMENTS`: it picks compute
AND storage together, so an asset never learns where it runs. The DVC and MLflow resources are the
same everywhere (MLFLOW_TRACKING_URI, when set, points MLflow elsewhere). A cloud deployment reads
its settings (bucket, role, image, region, ...) from environment variables; `setting()` fails with
the name of the variable that is missing or malformed. Secrets are never read here: the cloud
clients take credentials from the environment or the machine's identity.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from resources.compute import LocalCompute
from resources.dvc import DvcResource
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

DEPLOYMENT_VARIABLE = "KEEL_DEPLOYMENT"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

Deployment = Callable[..., dict[str, Any]]


class DeploymentError(ValueError):
    """A deployment cannot be built from the environment; the message names the variable."""


def setting(
    environ: Mapping[str, str],
    deployment: str,
    name: str,
    default: str | None = None,
    *,
    description: str = "",
) -> str:
    """The value of environment variable `name`, or `default`; missing and no default is an error."""
    value = environ.get(name, "").strip()
    if value:
        return value
    if default is not None:
        return default
    what = f" ({description})" if description else ""
    raise DeploymentError(f"{DEPLOYMENT_VARIABLE}={deployment} needs the environment variable {name}{what}")


def int_setting(environ: Mapping[str, str], deployment: str, name: str, default: int) -> int:
    raw = setting(environ, deployment, name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise DeploymentError(f"{name}={raw!r} is not a whole number ({DEPLOYMENT_VARIABLE}={deployment})") from None


def bool_setting(environ: Mapping[str, str], deployment: str, name: str, default: bool) -> bool:
    raw = setting(environ, deployment, name, "true" if default else "false").lower()
    if raw not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise DeploymentError(f"{name}={raw!r} is not true or false ({DEPLOYMENT_VARIABLE}={deployment})")
    return raw in {"1", "true", "yes", "on"}


def uri_setting(environ: Mapping[str, str], deployment: str, name: str, scheme: str, description: str = "") -> str:
    value = setting(environ, deployment, name, description=description).rstrip("/")
    if not value.startswith(f"{scheme}://") or len(value) <= len(f"{scheme}://"):
        raise DeploymentError(f"{name}={value!r} must be a {scheme}:// URI ({DEPLOYMENT_VARIABLE}={deployment})")
    return value


def shared(root: Path) -> dict[str, Any]:
    """The resources every deployment has: the DVC repository and the MLflow registry."""
    return {
        "dvc": DvcResource(repo_dir=str(root)),
        "registry": ModelRegistry(root=str(root / "var" / "mlflow")),
    }


def local(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything on this machine: the DVC repo, artifacts under var/storage, MLflow under var/mlflow.

    MLFLOW_TRACKING_URI, when set, points tracking and the registry at another MLflow instead.
    """
    return {
        **shared(root),
        "storage": ArtifactStore(root=str(root / "var" / "storage")),
        "compute": LocalCompute(working_dir=str(root)),
    }


# KEEL_DEPLOYMENT value -> function building its resources. One entry per deployment.
DEPLOYMENTS: dict[str, Deployment] = {"local": local}


def deployment_name(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(DEPLOYMENT_VARIABLE, "local").strip() or "local"


def resources_for(
    name: str | None = None, root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    name = name or deployment_name(environ)
    if name not in DEPLOYMENTS:
        raise DeploymentError(
            f"{DEPLOYMENT_VARIABLE}={name!r} is not a known deployment; known deployments: {', '.join(sorted(DEPLOYMENTS))}"
        )
    return DEPLOYMENTS[name](root, environ)
