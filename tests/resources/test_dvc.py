"""DvcResource against a real project copy: hashes from dvc.lock, git revision, errors that say why."""

import select
import subprocess
import sys

import pytest
import yaml

from resources.dvc import DvcError, DvcResource
from tests.conftest import dvc, run

# Holds the repository's DVC lock for longer than DVC's own 3 s of retries, as a busy run's `dvc repro` does.
HOLD_LOCK = """
import sys, time
from dvc.repo import Repo
with Repo(".").lock:
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
    print("releasing", flush=True)
"""


def test_output_hash_is_the_lock_files_md5(project):
    dvc = DvcResource(repo_dir=str(project))
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert dvc.output_hash("import_raw", "data/raw/data.parquet") == lock["stages"]["import_raw"]["outs"][0]["md5"]
    with pytest.raises(DvcError, match="dvc.lock has no output 'data/raw/other.parquet' for stage 'import_raw'"):
        dvc.output_hash("import_raw", "data/raw/other.parquet")


def test_git_revision_marks_uncommitted_changes(project):
    dvc = DvcResource(repo_dir=str(project))
    clean = dvc.git_revision()
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + "\n# edited\n")
    assert dvc.git_revision() == f"{clean}-dirty"


def test_failed_command_carries_dvcs_message(project):
    with pytest.raises(DvcError) as caught:
        DvcResource(repo_dir=str(project)).repro("no_such_stage")
    assert "`dvc repro no_such_stage` failed" in str(caught.value) and "no_such_stage" in str(caught.value)


def test_repro_waits_for_the_lock_another_run_holds(tmp_path):
    """Training runs launched together each run `dvc repro import_raw`: the later ones wait their turn."""
    run(["git", "init", "-q"], cwd=tmp_path)
    dvc("init", "-q", cwd=tmp_path)
    (tmp_path / "in.txt").write_text("rows\n")
    dvc("stage", "add", "-q", "-n", "copy", "-d", "in.txt", "-o", "out.txt", "cp in.txt out.txt", cwd=tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, "10"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        DvcResource(repo_dir=str(tmp_path)).repro("copy")  # without waiting: "Unable to acquire lock" after 3 s
        released = select.select([holder.stdout], [], [], 0)[0] and holder.stdout.readline().strip() == "releasing"
        assert released, "the repro finished while the other process still held the lock"
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "out.txt").read_text() == "rows\n"
