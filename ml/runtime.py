"""Where an entry point's inputs and outputs are inside the job it runs in.

The entry points take URIs (`--features s3://…/features.parquet --out s3://…/models/x`). On a laptop
and under LocalCompute they read and write those URIs directly. A managed training platform instead
copies the inputs into the container and collects the outputs from a folder of its own, so the
entry point calls `resolve()` on its parsed arguments and works with the paths it returns:

    paths = runtime.resolve(vars(args), inputs=["features", "state", "config"], outputs=["out"])

Platforms, in `PLATFORMS` order; the first that recognises the environment wins, none means
"use the arguments as given":

- SageMaker (`SM_TRAINING_ENV` or an `SM_CHANNEL_*` variable is set): input `name` was delivered
  as the channel `name` (`SM_CHANNEL_<NAME>`, else `/opt/ml/input/data/<name>`). A file input is
  the channel's file with the URI's base name; a directory input is the channel folder itself.
  Output `name` is written to `SM_MODEL_DIR/<name>` (`/opt/ml/model/<name>`), which SageMaker packs
  into model.tar.gz; the compute backend unpacks it to the URI the asset asked for. A job on several
  instances (`KEEL_SAGEMAKER_DIRECT_OUTPUTS=1`) writes its outputs to their s3:// URIs instead, since
  SageMaker keeps the model folder of one instance only. Hyperparameters
  (`/opt/ml/input/config/hyperparameters.json`, all values strings) whose key names an argument
  replace that argument before it is resolved, so a job started from the console can override one.

- Azure ML (a `KEEL_AZUREML_PATH_*` variable is set): Azure ML mounts the inputs and creates the
  output folders itself, and names their local paths only in the command line (`${{inputs.x}}`).
  The Azure ML backend therefore starts the entry point as
  `KEEL_AZUREML_PATH_<NAME>=${{inputs.name}} ... python -m ml.x --name <URI> ...`: input and output
  `name` are the paths in `KEEL_AZUREML_PATH_<NAME>`, and the arguments stay the URIs, so the
  report names where the asset will find its outputs, not a folder on the compute node.

- Vertex AI (`AIP_MODEL_DIR` is set: Vertex sets it from the job's `baseOutputDirectory`, which the
  Vertex backend always sends): the job's service account reads and writes Cloud Storage itself,
  so gs:// inputs and outputs stay as given (gcsfs), and so do paths under `/gcs/` (Vertex's Cloud
  Storage FUSE mount). An output given as a relative name (a job started by hand with `--out
  model`) goes under `AIP_MODEL_DIR`. Any other local output path is refused: the job's disk is
  gone when it ends. AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR are not used (no entry point
  checkpoints or writes TensorBoard logs).

Adding a platform is one function `(arguments, inputs, outputs, environ) -> dict | None` returning
None when the environment is not that platform, appended to `PLATFORMS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

Resolver = Callable[[dict[str, str], list[str], list[str], Mapping[str, str]], "dict[str, str] | None"]

SAGEMAKER_ROOT = Path("/opt/ml")


def _basename(uri: str) -> str:
    return PurePosixPath(uri.split("://", 1)[-1].rstrip("/")).name


def _on_sagemaker(environ: Mapping[str, str]) -> bool:
    return "SM_TRAINING_ENV" in environ or any(name.startswith("SM_CHANNEL_") for name in environ)


def _sagemaker_root(environ: Mapping[str, str]) -> Path:
    # SageMaker always uses /opt/ml; KEEL_SAGEMAKER_ROOT lets a test play the container elsewhere.
    return Path(environ.get("KEEL_SAGEMAKER_ROOT", str(SAGEMAKER_ROOT)))


def sagemaker_hyperparameters(environ: Mapping[str, str]) -> dict[str, str]:
    path = _sagemaker_root(environ) / "input" / "config" / "hyperparameters.json"
    if not path.exists():
        return {}
    document = json.loads(path.read_text(encoding="utf-8") or "{}")
    if not isinstance(document, dict):
        raise ValueError(f"{path} holds {type(document).__name__}; SageMaker hyperparameters are a JSON object")
    return {str(key): str(value) for key, value in document.items()}


def sagemaker(
    arguments: dict[str, str], inputs: list[str], outputs: list[str], environ: Mapping[str, str]
) -> dict[str, str] | None:
    if not _on_sagemaker(environ):
        return None
    root = _sagemaker_root(environ)
    overrides = {k: v for k, v in sagemaker_hyperparameters(environ).items() if k in arguments}
    resolved = {**arguments, **overrides}
    for name in inputs:
        channel = Path(environ.get(f"SM_CHANNEL_{name.upper()}", str(root / "input" / "data" / name)))
        if not channel.is_dir():
            raise FileNotFoundError(f"input {name!r}: SageMaker channel folder {channel} does not exist")
        as_file = channel / _basename(resolved[name])
        resolved[name] = str(as_file if as_file.is_file() else channel)
    model_dir = Path(environ.get("SM_MODEL_DIR", str(root / "model")))
    direct = environ.get("KEEL_SAGEMAKER_DIRECT_OUTPUTS", "") == "1"  # a job on several instances
    for name in outputs:
        resolved[name] = resolved[name] if direct else str(model_dir / name)
    return resolved


AZUREML_PATH_PREFIX = "KEEL_AZUREML_PATH_"


def azureml(
    arguments: dict[str, str], inputs: list[str], outputs: list[str], environ: Mapping[str, str]
) -> dict[str, str] | None:
    if not any(name.startswith(AZUREML_PATH_PREFIX) for name in environ):
        return None
    resolved = dict(arguments)
    for name in [*inputs, *outputs]:
        variable = f"{AZUREML_PATH_PREFIX}{name.upper()}"
        if not environ.get(variable):
            raise ValueError(f"{name!r}: {variable} is not set; the Azure ML job's command must name its local path")
        resolved[name] = environ[variable]
    return resolved


VERTEX_FUSE_ROOT = "/gcs/"


def vertex(
    arguments: dict[str, str], inputs: list[str], outputs: list[str], environ: Mapping[str, str]
) -> dict[str, str] | None:
    model_dir = environ.get("AIP_MODEL_DIR", "").strip()
    if not model_dir:
        return None
    resolved = dict(arguments)
    for name in outputs:
        value = arguments[name]
        if value.startswith(("gs://", VERTEX_FUSE_ROOT)):
            continue
        if "://" in value or value.startswith(("/", "~")):
            raise ValueError(
                f"output {name!r} is {value!r}, which a Vertex AI job cannot keep (its disk is gone when it ends); "
                f"pass a gs:// URI, or a relative name to write it under AIP_MODEL_DIR ({model_dir})"
            )
        resolved[name] = f"{model_dir.rstrip('/')}/{value.removeprefix('./')}"
    return resolved


PLATFORMS: list[Resolver] = [sagemaker, azureml, vertex]


def resolve(
    arguments: Mapping[str, str],
    inputs: list[str],
    outputs: list[str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The paths to read `inputs` from and write `outputs` to on the platform this process runs on.

    `arguments` maps argument names to the URIs the caller passed; names in neither list are
    returned unchanged. Off any managed platform the result equals `arguments`.
    """
    environ = os.environ if environ is None else environ
    missing = [name for name in [*inputs, *outputs] if name not in arguments]
    if missing:
        raise ValueError(f"resolve() was asked for arguments {missing} that were not passed")
    for platform in PLATFORMS:
        resolved = platform(dict(arguments), list(inputs), list(outputs), environ)
        if resolved is not None:
            return resolved
    return dict(arguments)
