"""Compiled prediction for LightGBM models: the same trees as machine code, 4-10x faster than LightGBM.

lleaves (LLVM) compiles the artifact's verified model.txt on this machine; predictions equal
LightGBM's to within float rounding (about 1e-15). The compiled object is cached on local disk only,
under `$KEEL_COMPILED_CACHE` (default `~/.cache/keel/compiled`), one entry per model manifest sha256
and per compiler, compiler version and CPU (the code is tuned for the CPU that compiled it). An entry
is written whole (temporary folder + rename, under a file lock, so concurrent scorers compile once)
and holds an HMAC-SHA256 over the object's bytes, the model's manifest sha256 and the toolchain, keyed
with a random key made once per cache folder (`entry-key`, mode 0600, never leaves the machine): an
entry is trusted only if it was built from this manifest by this cache, so an object swapped for
another model's (its recorded sha256 rewritten too) does not match and is compiled again. A compiled
object is never read from the registry or a bucket. Where the cache folder cannot be written (a read-only
home in a container) the model is compiled for the process alone.

Where compilation is unavailable (lleaves not installed, a compile error) `compile_lightgbm` returns
the model as it is, with the reason: scoring goes on with LightGBM's own predict and says so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock

from ml.models import LightGBMModel, _matrix

CACHE_ENV = "KEEL_COMPILED_CACHE"
OBJECT_FILE, ENTRY_FILE, KEY_FILE = "model.o", "entry.json", "entry-key"
KEY_BYTES = 32
MAX_ENTRY_BYTES, MAX_OBJECT_BYTES = 64 * 1024, 2 * 1024**3  # an entry's record; its object (a few MB in practice)


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "keel" / "compiled"


def prediction_threads() -> int:
    """At most 2: the scorer prepares the next chunk on another core meanwhile; fewer when OMP_NUM_THREADS
    says so (the shards of a day share the machine's cores, resources/compute.py)."""
    limit = os.environ.get("OMP_NUM_THREADS", "")
    cores = int(limit) if limit.isdigit() and int(limit) > 0 else (os.cpu_count() or 1)
    return max(1, min(2, cores))


@dataclass
class CompiledLightGBMModel:
    """A LightGBM model that predicts with its compiled form; everything else is the LightGBM model's."""

    source: LightGBMModel
    compiled: Any  # lleaves.Model, compiled
    threads: int
    family = "lightgbm"

    @property
    def columns(self) -> list[str]:
        return self.source.columns

    @property
    def booster(self):
        return self.source.booster

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self.compiled.predict(_matrix(features, self.columns), n_jobs=self.threads)

    def importance(self) -> dict[str, float]:
        return self.source.importance()

    def save(self, directory: Path) -> str:
        return self.source.save(directory)


def _toolchain() -> dict[str, str]:
    """What the compiled code depends on besides the model: the cache key's second half."""
    from importlib.metadata import version

    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    return {
        "compiler": f"lleaves {version('lleaves')}",
        "llvmlite": version("llvmlite"),
        "cpu": llvm.get_host_cpu_name(),
        "cpu_features": llvm.get_host_cpu_features().flatten(),
    }


def _trusted_key(path: Path) -> bytes | None:
    """The cache's key, if only this user can have written or read it."""
    try:
        info = path.lstat()
        key = path.read_bytes()
    except OSError:
        return None
    private = stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    return key if private and len(key) == KEY_BYTES else None


def _local_key(root: Path) -> bytes:
    """The cache folder's HMAC key, made once with mode 0600; a key others could read or replace is made
    again (which invalidates every entry: each is compiled again on its next load)."""
    path = root / KEY_FILE
    key = _trusted_key(path)
    if key is not None:
        return key
    with FileLock(str(root / f"{KEY_FILE}.lock")):
        key = _trusted_key(path)
        if key is not None:  # another process made it meanwhile
            return key
        staging = root / f"{KEY_FILE}.tmp-{os.getpid()}"
        staging.unlink(missing_ok=True)
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(KEY_BYTES))
        os.replace(staging, path)
        return path.read_bytes()


def _signature(key: bytes, object_bytes: bytes, expected: dict[str, Any]) -> str:
    """What makes an entry this cache's: the object, the manifest it was compiled from, the toolchain."""
    mac = hmac.new(key, json.dumps(expected, sort_keys=True).encode("utf-8"), hashlib.sha256)
    mac.update(b"\0")
    mac.update(object_bytes)
    return mac.hexdigest()


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; OSError for anything else. A cache entry's file
    swapped for a link to /dev/zero, a FIFO or a huge file would otherwise be read without end (or hang)."""
    with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK)) as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise OSError(f"{path} is not a regular file of at most {limit} bytes")
        return file.read(limit + 1)


def _entry_valid(entry: Path, expected: dict[str, Any], key: bytes) -> bool:
    try:
        recorded = json.loads(_read_regular(entry / ENTRY_FILE, MAX_ENTRY_BYTES).decode("utf-8"))
        object_bytes = _read_regular(entry / OBJECT_FILE, MAX_OBJECT_BYTES)
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or not isinstance(recorded.get("hmac_sha256"), str):
        return False
    described = {k: v for k, v in recorded.items() if k not in ("object_sha256", "hmac_sha256")}
    return described == expected and hmac.compare_digest(
        recorded["hmac_sha256"], _signature(key, object_bytes, expected)
    )


def _compile_into(model_file: Path, folder: Path):
    import lleaves

    compiled = lleaves.Model(model_file=str(model_file))
    compiled.compile(cache=str(folder / OBJECT_FILE))  # writes the object there
    return compiled


def _cached(model_file: Path, entry: Path, expected: dict[str, Any]):
    """The compiled model from the cache entry, compiled into it first when it is missing or does not match."""
    import lleaves

    root = entry.parent
    key = _local_key(root)
    with FileLock(str(root / f"{entry.name}.lock")):
        cached = _entry_valid(entry, expected, key)
        if not cached:
            shutil.rmtree(entry, ignore_errors=True)  # missing, partial or corrupted: compile again
            for stale in root.glob(f".{entry.name}.tmp-*"):  # a killed build's (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
            building = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=root))
            try:
                _compile_into(model_file, building)
                object_bytes = (building / OBJECT_FILE).read_bytes()
                signed = {"object_sha256": hashlib.sha256(object_bytes).hexdigest()}
                signed["hmac_sha256"] = _signature(key, object_bytes, expected)
                entry_doc = json.dumps({**expected, **signed}, indent=1)
                (building / ENTRY_FILE).write_text(entry_doc, encoding="utf-8")
                os.replace(building, entry)
            finally:
                shutil.rmtree(building, ignore_errors=True)
        compiled = lleaves.Model(model_file=str(model_file))
        compiled.compile(cache=str(entry / OBJECT_FILE))  # loads the object: no compilation
    return compiled, "compiled, cached" if cached else "compiled"


def compile_lightgbm(
    model: LightGBMModel, model_file: Path, manifest_sha256: str, root: Path | None = None
) -> tuple[LightGBMModel | CompiledLightGBMModel, str]:
    """The compiled model and a description of what predicts, or the model itself and why not."""
    import lightgbm

    fallback = f"lightgbm {lightgbm.__version__} (compiled prediction unavailable: {{}})"
    try:
        import lleaves  # noqa: F401 - its absence is a reason to fall back

        toolchain = _toolchain()
    except (ImportError, OSError) as error:  # not installed, or llvmlite's LLVM library cannot load
        return model, fallback.format(f"lleaves cannot be imported: {error}")
    expected = {"manifest_sha256": manifest_sha256, **toolchain}
    key = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:16]
    root = root or cache_root()
    try:
        try:
            root.mkdir(parents=True, exist_ok=True)
            writable = os.access(root, os.W_OK)
        except OSError:
            writable = False
        if writable:
            compiled, state = _cached(model_file, root / f"{manifest_sha256}-{key}", expected)
        else:  # e.g. a read-only home in a container: compile for this process only
            with tempfile.TemporaryDirectory(prefix="keel-compiled-") as scratch:
                compiled, _ = _cached(model_file, Path(scratch) / key, expected)
            state = f"compiled, not cached: {root} is not writable"
    except Exception as error:  # noqa: BLE001 - any compiler failure falls back to LightGBM, with its reason
        return model, fallback.format(f"{type(error).__name__}: {str(error)[:300]}")
    if compiled.num_feature() != len(model.columns):
        return model, fallback.format(f"compiled model has {compiled.num_feature()} features, not {len(model.columns)}")
    return CompiledLightGBMModel(model, compiled, prediction_threads()), f"{toolchain['compiler']} ({state})"
