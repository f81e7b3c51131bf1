"""The project's settings, params.yaml, as one resource: every asset, check and sensor reads them here.

The file is parsed into one validated model (ml/params.py) and parsed again only when it changes
(its modification time or size), so a run or a sensor tick reads it once, and an edit takes effect
at the next run without restarting anything.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg
from pydantic import Field

from ml.params import PARAMS_FILE, Params, ParamsError, load_params


@functools.lru_cache(maxsize=16)
def _parsed(path: str, mtime_ns: int, size: int) -> Params:
    return load_params(path)


class ParamsResource(dg.ConfigurableResource):
    """params.yaml of the project, validated (a bad key fails naming it)."""

    project_dir: str = Field(description="The project folder; params.yaml's relative paths start here.")
    file: str = Field(default=PARAMS_FILE, description="The settings file, relative to project_dir.")

    @property
    def path(self) -> Path:
        return Path(self.project_dir).resolve() / self.file

    def load(self) -> Params:
        """The settings as they are in the file now; a broken file fails the step with the key at fault."""
        path = self.path
        try:
            stat = path.stat()
            return _parsed(str(path), stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            raise dg.Failure(description=f"{path}: no such file; the project's settings live in params.yaml") from None
        except ParamsError as error:
            raise dg.Failure(description=str(error)) from None
