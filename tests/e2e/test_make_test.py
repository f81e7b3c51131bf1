"""`make test` installs what the tests need on a fresh machine: Debian's node, npm, chromium and postgresql
when missing (the browser tests need chromium, the team instance's test Postgres), before Azurite; .ci/run
calls the same command."""

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO


def stub_path(folder: Path, present: tuple[str, ...]) -> str:
    """A PATH with only bash's helpers, the given commands, and an apt-get that records its arguments."""
    folder.mkdir()
    for tool in ("env", *present):
        (folder / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    (folder / "id").write_text("#!/bin/bash\necho 0\n")
    (folder / "apt-get").write_text(f'#!/bin/bash\necho "$DEBIAN_FRONTEND $*" >> {folder / "apt.log"}\n')
    for stub in ("id", "apt-get"):
        (folder / stub).chmod(0o755)
    return str(folder)


def system_packages(tmp_path: Path, present: tuple[str, ...]) -> list[str]:
    folder = tmp_path / "bin"
    postgres = tmp_path / "postgresql" / "15" / "bin" / "postgres"
    if "postgres" in present:  # Debian's server binary, found by its path rather than on PATH
        postgres.parent.mkdir(parents=True)
        postgres.write_text("")
    env = {
        **os.environ,
        "PATH": stub_path(folder, tuple(p for p in present if p != "postgres")),
        "POSTGRES_BIN_GLOB": str(tmp_path / "postgresql" / "*" / "bin" / "postgres"),
    }
    proc = subprocess.run(
        [shutil.which("make"), "-s", "system-packages"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = folder / "apt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_make_test_installs_chromium_node_npm_and_postgresql_when_missing(tmp_path: Path):
    assert system_packages(tmp_path, present=()) == [
        "noninteractive update -qq",
        "noninteractive install -y -qq nodejs npm chromium postgresql",
    ]


def test_nothing_is_installed_when_they_are_there(tmp_path: Path):
    assert system_packages(tmp_path, present=("node", "npm", "chromium", "postgres")) == []


def test_make_test_runs_the_installer_and_ci_runs_make_test():
    makefile = (REPO / "Makefile").read_text()
    assert "\ntest: setup system-packages emulators\n" in makefile
    assert "$(AZURITE_STAMP): | system-packages" in makefile  # npm is there before Azurite is installed
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.rstrip().endswith("make lint\nmake test")
