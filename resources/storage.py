"""Where the project's artifacts live: a local folder by default, or an s3://, gs:// or az:// prefix.

One class over fsspec for every backend, so switching storage is a change of `root`, not of
code. Where each artifact lives under the root is resources/layout.py's; files are read and written
with ml.io by URI, all-or-nothing (ml.io.atomic_output). Nothing is pickled: tables are Parquet,
states and reports JSON.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import fsspec
from pydantic import Field

from ml import io


class ArtifactStore(dg.ConfigurableResource):
    root: str = Field(description="Local folder or fsspec URI prefix under which artifacts are written.")
    web_url: str | None = Field(
        default=None,
        description="URL at which a browser reads the HTML files under `root` (for a local root, the "
        "report server that `make ui` starts). Without it, s3:// and gs:// files link to their cloud console.",
    )

    def uri(self, *parts: str) -> str:
        base = self.root.rstrip("/")
        return "/".join([base, *parts]) if io.is_remote(base) else io.resolve("/".join([base, *parts]))

    def browser_url(self, uri: str) -> str | None:
        """Where a person opens the file `uri` (one of this store's) in a browser, or None when nowhere."""
        base = self.uri()
        if not uri.startswith(base + "/"):
            raise ValueError(f"{uri} is not under the artifact store's root {base}")
        if self.web_url:
            return self.web_url.rstrip("/") + "/" + quote(uri[len(base) + 1 :])
        scheme, _, rest = uri.partition("://")
        bucket, _, key = rest.partition("/")
        if scheme == "s3":
            return f"https://console.aws.amazon.com/s3/object/{bucket}?prefix={quote(key)}"
        if scheme in ("gs", "gcs"):
            return f"https://console.cloud.google.com/storage/browser/_details/{bucket}/{quote(key)}"
        return None  # a local root nobody serves; Azure portal links need the account, which the URI lacks

    @contextmanager
    def local_copy(self, uri: str) -> Iterator[Path]:
        """A local directory with the contents of `uri` for the `with` block: the folder itself when local,
        else a downloaded copy that is removed when the block ends (also on error)."""
        if not io.is_remote(uri):
            yield Path(uri)
            return
        target = self.download(uri)
        try:
            yield target
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def download(self, uri: str) -> Path:
        """A new temporary directory with the contents of the remote `uri`; the caller owns it and removes it."""
        fs, path = fsspec.core.url_to_fs(uri)
        target = Path(tempfile.mkdtemp(prefix="keel-artifact-"))
        try:
            fs.get(path.rstrip("/") + "/", str(target), recursive=True)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # a failed download leaves nothing behind either
            raise
        return target
