"""The team instance's services as separate processes, started from team/Procfile as `make team` starts them,
on free loopback ports with their state in a temporary folder; stopped as honcho stops them (SIGTERM to each
process group, SIGKILL after a grace period)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ADMIN = "admin"


def postgres_missing() -> str | None:
    """Why the team instance cannot run here, or None."""
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres") and not os.environ.get("KEEL_PG_BIN"):
        return "Postgres server binaries are missing (apt-get install postgresql; `make system-packages` does it)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "running as root without setpriv, so Postgres cannot be started as the postgres user"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile(project: Path) -> dict[str, str]:
    entries = {}
    for line in (project / "team" / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


@dataclass
class Team:
    """Postgres, MLflow, the code server, the daemon and webservers of one project copy."""

    project: Path
    folder: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def create(cls, project: Path, instance_settings: dict | None = None) -> Team:
        # Postgres runs as the postgres user: its folder must be reachable (pytest's tmp folders are 0700).
        folder = Path(tempfile.mkdtemp(prefix="keel-team-"))
        folder.chmod(0o755)
        settings = yaml.safe_load((project / "team" / "dagster.yaml").read_text())
        for section, values in (instance_settings or {}).items():
            settings.setdefault(section, {}).update(values)
        (folder / "dagster.yaml").write_text(yaml.safe_dump(settings))
        secret = os.urandom(12).hex()
        env = {
            "KEEL_TEAM_DIR": str(folder),
            "KEEL_DAGSTER_YAML": str(folder / "dagster.yaml"),
            "KEEL_PG_PORT": str(free_port()),
            "KEEL_MLFLOW_PORT": str(free_port()),
            "KEEL_CODE_SERVER_PORT": str(free_port()),
            "KEEL_WEB_PORT": str(free_port()),
            "KEEL_PG_PASSWORD": f"pg-{secret}",
            "MLFLOW_AUTH_ADMIN_PASSWORD": f"admin-{secret}",
            "MLFLOW_FLASK_SERVER_SECRET_KEY": f"flask-{secret}",
            "KEEL_MLFLOW_WORKERS": "1",
        }
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{env['KEEL_MLFLOW_PORT']}"
        return cls(project=project, folder=folder, env=env)

    # --- the environment a service or a person's shell sees --------------------------------------
    def shell_env(self, **extra: str) -> dict[str, str]:
        """The environment of a process on the team instance (team/env.sh's settings, the credentials given)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KEEL_", "DAGSTER_"))}
        venv_bin = str(Path(os.sys.executable).parent)
        out = {**base, **self.env, "KEEL_BIN": venv_bin, "PATH": f"{venv_bin}{os.pathsep}{base['PATH']}", **extra}
        command = ". team/env.sh && env -0"
        dumped = subprocess.run(["bash", "-c", command], cwd=self.project, env=out, capture_output=True, check=True)
        return dict(item.split("=", 1) for item in dumped.stdout.decode().split("\0") if "=" in item)

    @property
    def home(self) -> Path:
        return self.folder / "dagster"

    @property
    def mlflow_url(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def pg_url(self, database: str = "dagster") -> str:
        e = self.env
        return f"postgresql+psycopg2://keel:{e['KEEL_PG_PASSWORD']}@127.0.0.1:{e['KEEL_PG_PORT']}/{database}"

    # --- processes -------------------------------------------------------------------------------
    def start(self, name: str, command: str | None = None, **extra: str) -> subprocess.Popen:
        command = command or procfile(self.project)[name]
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.project,
            env={**self.shell_env(), **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as honcho starts it
        )
        self.processes[name] = process
        return process

    def start_all(self) -> None:
        for name in procfile(self.project):
            self.start(name)

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop(self, name: str, grace: float = 10.0) -> None:
        """SIGTERM to the service's process group, SIGKILL after `grace` seconds (the code server needs it)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        else:
            with contextlib.suppress(ProcessLookupError):  # what the shell left behind in the group
                os.killpg(process.pid, signal.SIGKILL)

    def kill(self, name: str) -> None:
        """A crash: SIGKILL to the whole process group, no chance to clean up."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in [n for n in self.processes if n != "postgres"]:
            self.stop(name)
        self.stop("postgres", grace=30)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- health ----------------------------------------------------------------------------------
    def wait_http(self, name: str, url: str, deadline: float, ok=(200,)) -> None:
        """Poll `url` until it answers one of `ok` (servers take up to a minute on busy cores)."""
        while True:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)}")
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    if response.status in ok:
                        return
            except urllib.error.HTTPError as error:
                if error.code in ok:
                    return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not answer at {url}:\n{self.log(name)}")
            time.sleep(1)
