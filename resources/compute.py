"""Where the `ml` entry points run: one small interface, one implementation per backend.

An entry point is a module under `ml/` run as `python -m <module> --<name> <uri> ...`. Inputs and
outputs are URIs in the deployment's storage, so a backend only has to start the process where it
belongs and carry Dagster Pipes messages back; what the entry point reported comes back as the
completed Pipes invocation (`.get_materialize_result()`).

`LocalCompute` runs it as a subprocess on this machine with `dg.PipesSubprocessClient`. A cloud
backend (SageMaker, Vertex AI, Azure ML) is a `CloudJobCompute` (resources/cloud_job.py): one job per
call, its inputs and outputs the platform's data bindings, Pipes through the cloud's object store.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field


def entry_point_command(python: str, module: str, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> list[str]:
    """`python -m module --input uri ... --output uri ...`, in a stable order."""
    command = [python, "-m", module]
    for name, uri in [*sorted(inputs.items()), *sorted(outputs.items())]:
        command += [f"--{name}", uri]
    return command


class ComputeBackend(dg.ConfigurableResource):
    """Runs an `ml` entry point with inputs and outputs and returns what it reported through Pipes."""

    def run(
        self,
        context: dg.AssetExecutionContext,
        module: str,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        extras: Mapping[str, Any] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        raise NotImplementedError(f"{type(self).__name__} does not implement run()")


class LocalCompute(ComputeBackend):
    """A subprocess on the orchestrator's machine, with the project's interpreter."""

    working_dir: str = Field(description="Directory the entry point runs in (the project root, so `-m ml.x` resolves).")
    python: str = Field(default=sys.executable, description="Interpreter that runs the entry point.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for the process.")

    def run(
        self,
        context: dg.AssetExecutionContext,
        module: str,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        extras: Mapping[str, Any] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        command = entry_point_command(self.python, module, inputs, outputs)
        context.log.info(f"running locally: {' '.join(command)}")
        client = dg.PipesSubprocessClient(cwd=self.working_dir, env=dict(self.env))
        return client.run(context=context, command=command, extras=dict(extras or {}))
