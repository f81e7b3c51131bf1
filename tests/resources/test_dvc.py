"""DvcResource against a real project copy: hashes from dvc.lock, git revision, errors that say why."""

import pytest
import yaml

from resources.dvc import DvcError, DvcResource


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
