"""Where the `ml` entry points run: one small interface, one implementation per backend.

An entry point is a module under `ml/` run as `python -m <module> --<name> <uri> ...`. Inputs and
outputs are URIs in the deployment's storage, so a backend only has to start the process where it
belongs and carry Dagster Pipes messages back; what the entry point reported comes back as the
completed Pipes invocation (`.get_materialize_result()`).

`LocalCompute` runs it as a subprocess on this machine with `dg.PipesSubprocessClient`; with
`replicas` > 1 it starts that many at once (replica i gets KEEL_SHARD_INDEX=i), and only replica 0
talks Pipes: the others log to a file the launcher reads when they end. A cloud
backend (SageMaker, Vertex AI, Azure ML) is a `CloudJobCompute` (resources/cloud_job.py): one job per
call, its inputs and outputs the platform's data bindings, Pipes through the cloud's object store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

INDEX_VARIABLE = "KEEL_SHARD_INDEX"  # read by ml/shards.py


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
        replicas: int = 1,
    ) -> dg.PipesClientCompletedInvocation:
        """`replicas` > 1: the same command in that many processes at once, each knowing its index
        (KEEL_SHARD_INDEX locally, the platform's rank in a cloud job); only replica 0 speaks Pipes."""
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
        replicas: int = 1,
    ) -> dg.PipesClientCompletedInvocation:
        command = entry_point_command(self.python, module, inputs, outputs)
        context.log.info(f"running locally{f' in {replicas} processes' if replicas > 1 else ''}: {' '.join(command)}")
        env = dict(self.env)
        if replicas == 1:
            client = dg.PipesSubprocessClient(cwd=self.working_dir, env=env)
            return client.run(context=context, command=command, extras=dict(extras or {}))
        # Each process predicts on its share of the cores, so N processes do not oversubscribe them.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // replicas)))
        with tempfile.TemporaryDirectory(prefix="keel-replicas-") as logs:
            others = [self._start(command, env, index, Path(logs)) for index in range(1, replicas)]
            try:
                client = dg.PipesSubprocessClient(cwd=self.working_dir, env={**env, INDEX_VARIABLE: "0"})
                invocation = client.run(context=context, command=command, extras=dict(extras or {}))
            except BaseException:
                for process, _ in others:
                    process.terminate()  # the day failed: the other replicas' work is not wanted
                for process, _ in others:
                    process.wait()
                raise
            failed = []
            for index, (process, log) in enumerate(others, start=1):
                code = process.wait()
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
                if code != 0:
                    failed.append(f"replica {index} exited with {code}: " + " | ".join(tail))
                elif tail:
                    context.log.info(f"replica {index}: {tail[-1]}")
            if failed:
                raise dg.Failure(description=f"{module}: " + "; ".join(failed))
            return invocation

    def _start(self, command: list[str], env: dict[str, str], index: int, logs: Path) -> tuple[subprocess.Popen, Path]:
        log = logs / f"replica-{index}.log"
        with open(log, "w", encoding="utf-8") as handle:
            process = subprocess.Popen(
                command,
                cwd=self.working_dir,
                env={**os.environ, **env, INDEX_VARIABLE: str(index)},
                stdout=subprocess.DEVNULL,
                stderr=handle,
            )
        return process, log
