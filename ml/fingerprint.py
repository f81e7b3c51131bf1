"""Code versions: a short hash of the source files that produce an output.

Dagster compares an asset's code version with the one its last materialization recorded, so an
edit to the code behind an asset marks it (and what depends on it) as stale in the UI.
"""

from __future__ import annotations

import hashlib
import inspect
from types import ModuleType


def code_version(*modules: ModuleType) -> str:
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]
