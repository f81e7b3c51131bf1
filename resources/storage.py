"""Where the project's artifacts live: a local folder by default, or an s3://, gs:// or az:// prefix.

One class over fsspec for every backend, so switching storage is a change of `root`, not of
code. Writes are all-or-nothing (ml.io.atomic_output). Nothing is pickled: tables are Parquet,
states and reports JSON.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import fsspec
import pandas as pd
from pydantic import Field

from ml import io


class ArtifactStore(dg.ConfigurableResource):
    root: str = Field(description="Local folder or fsspec URI prefix under which artifacts are written.")

    def uri(self, *parts: str) -> str:
        base = self.root.rstrip("/")
        return "/".join([base, *parts]) if io.is_remote(base) else io.resolve("/".join([base, *parts]))

    def write_parquet(self, frame: pd.DataFrame, *parts: str) -> str:
        uri = self.uri(*parts)
        io.write_parquet(frame, uri)
        return uri

    def write_json(self, document: Any, *parts: str) -> str:
        uri = self.uri(*parts)
        io.write_json(document, uri)
        return uri

    def read_parquet(self, *parts: str) -> pd.DataFrame:
        return io.read_parquet(self.uri(*parts))

    def read_json(self, *parts: str) -> Any:
        return io.read_json(self.uri(*parts))

    def exists(self, *parts: str) -> bool:
        return io.exists(self.uri(*parts))

    def local_copy(self, uri: str) -> Path:
        """A local directory with the contents of `uri`: the folder itself when local, else a downloaded copy."""
        if not io.is_remote(uri):
            return Path(uri)
        fs, path = fsspec.core.url_to_fs(uri)
        target = Path(tempfile.mkdtemp(prefix="keel-artifact-"))
        fs.get(path.rstrip("/") + "/", str(target), recursive=True)
        return target
