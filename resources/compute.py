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

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError
from pydantic import Field

INDEX_VARIABLE = "KEEL_SHARD_INDEX"  # read by ml/shards.py


def entry_point_command(python: str, module: str, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> list[str]:
    """`python -m module --input uri ... --output uri ...`, in a stable order."""
    command = [python, "-m", module]
    for name, uri in [*sorted(inputs.items()), *sorted(outputs.items())]:
        command += [f"--{name}", uri]
    return command


CLOSED_WITH_EXCEPTION = "[pipes] external process pipes closed with exception"


def _reported_error(context: dg.AssetExecutionContext, since: float) -> str | None:
    """What the entry point said when it failed (this step, since `since`): the exception it closed Pipes
    with, else its last ERROR line (a known input error's one-line message)."""
    step = context.get_step_execution_context().step.key
    exception = line = None
    for entry in context.instance.all_logs(context.run_id):
        if entry.timestamp < since or entry.step_key != step:
            continue
        event = entry.dagster_event
        data = event.engine_event_data if event is not None and event.event_type_value == "ENGINE_EVENT" else None
        if data is not None and data.error is not None and entry.user_message.startswith(CLOSED_WITH_EXCEPTION):
            exception = data.error.message.strip()
        elif event is None and entry.level >= logging.ERROR:
            line = entry.user_message.strip()
    return exception or line


def _with_its_error(context: dg.AssetExecutionContext, module: str, run: Callable[[], Any]) -> Any:
    """`run()`, a failed entry point's error named in the step's failure (so in its alert), not only
    Dagster's "External execution process failed with code 1"."""
    since = time.time()
    try:
        return run()
    except DagsterPipesExecutionError as error:
        reported = _reported_error(context, since)
        if reported is None:
            raise
        raise dg.Failure(description=f"{module}: {reported}") from error


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
            return _with_its_error(
                context, module, lambda: client.run(context=context, command=command, extras=dict(extras or {}))
            )
        # Each process predicts on its share of the cores, so N processes do not oversubscribe them.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // replicas)))
        with tempfile.TemporaryDirectory(prefix="keel-replicas-") as logs:
            others = [self._start(command, env, index, Path(logs)) for index in range(1, replicas)]
            try:
                client = dg.PipesSubprocessClient(cwd=self.working_dir, env={**env, INDEX_VARIABLE: "0"})
                invocation = _with_its_error(
                    context, module, lambda: client.run(context=context, command=command, extras=dict(extras or {}))
                )
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
