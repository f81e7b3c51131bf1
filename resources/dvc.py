"""The DVC repository: its stages, and the versions (DVC hashes) of their outputs. Settings: resources/params.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pydantic import Field


class DvcError(RuntimeError):
    """A DVC command failed; the message carries what the stage printed."""


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class DvcResource(dg.ConfigurableResource):
    """Runs DVC stages in the project repository and reads their outputs' hashes from dvc.lock."""

    repo_dir: str = Field(description="The DVC (and git) repository: the project root.")

    @property
    def root(self) -> Path:
        return Path(self.repo_dir).resolve()

    # --- commands ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Stage commands say `python -m ml...`: make that the interpreter running us, venv or not.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["DVC_NO_ANALYTICS"] = "1"
        return env

    def run(self, *args: str) -> str:
        """Run `dvc ARGS...` in the repository; raise DvcError with its output on failure.

        Runs launched together (training runs each import the raw data) share the repository's lock:
        DVC gives up on a held lock after 3 s, which a busy machine's `dvc repro` outlasts, so every
        command waits for it (`--wait-for-lock`; the lock goes with the process that held it).
        """
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "--wait-for-lock", *args],
            cwd=self.root,
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DvcError(
                f"`dvc {' '.join(args)}` failed (exit {proc.returncode}):\n{_tail(proc.stderr + proc.stdout)}"
            )
        return proc.stdout

    def repro(self, stage: str) -> str:
        return self.run("repro", stage)

    # --- versions ---------------------------------------------------------------------------
    def lock(self) -> dict[str, Any]:
        lock_file = self.root / "dvc.lock"
        if not lock_file.exists():
            raise DvcError(f"{lock_file} does not exist: run `dvc repro` first")
        return yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}

    def output_hash(self, stage: str, path: str) -> str:
        """DVC's md5 of a stage output, as recorded in dvc.lock: the data version of that output."""
        outs = self.lock().get("stages", {}).get(stage, {}).get("outs", [])
        for out in outs:
            if out["path"] == path:
                return out["md5"]
        raise DvcError(f"dvc.lock has no output {path!r} for stage {stage!r}")

    def git_revision(self) -> str:
        """The commit of the repository, with `-dirty` when tracked files have uncommitted changes."""

        def git(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True, check=False)

        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown (not a git commit)"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
