"""How an entry point reports back: through Dagster Pipes when Dagster started it, else on stdout.

The entry points call `reporter()` once. Under Pipes, logs and the final report become Dagster log
lines and the asset's materialization metadata; started by hand, logs go to stderr and the report is
printed as JSON, so scripts and notebooks can read it. Known input errors end the process with a
one-line message (exit code 1) instead of a traceback.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

# Errors that describe bad input or configuration; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError)


class Reporter:
    def __init__(self, pipes: Any | None) -> None:
        self.pipes = pipes

    def log(self, message: str) -> None:
        if self.pipes is not None:
            self.pipes.log.info(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def materialization(self, report: dict[str, Any], data_version: str | None = None) -> None:
        if self.pipes is not None:
            metadata = {"report": {"raw_value": report, "type": "json"}}
            self.pipes.report_asset_materialization(metadata=metadata, data_version=data_version)
        else:
            print(json.dumps(report, indent=2, sort_keys=True), flush=True)


@contextlib.contextmanager
def reporter() -> Iterator[Reporter]:
    if PipesEnvVarParamsLoader().is_dagster_pipes_process():
        with open_dagster_pipes() as pipes:
            try:
                yield Reporter(pipes)
            except USER_ERRORS as error:
                pipes.log.error(f"error: {error}")  # the one line a user needs, in Dagster's run log
                raise
        return
    try:
        yield Reporter(None)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
