"""DVC in a project copy: reproducible import, clean status, push/pull to the local remote, dvc.api."""

import io as stdio

import dvc.api
import pandas as pd

from tests.conftest import dvc as run_dvc
from tests.conftest import lock_md5, run, set_params

RAW = "data/raw/data.parquet"


def md5sum(project, path) -> str:
    return run(["md5sum", path], cwd=project).stdout.split()[0]


def git_changes(project) -> str:
    return run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project).stdout


def test_repro_from_nothing_then_status_is_clean(project):
    for out in ("data/source/telco_churn.csv", RAW):
        (project / out).unlink()
    run(["rm", "-rf", ".dvc/cache"], cwd=project)
    proc = run_dvc("repro", cwd=project)
    assert "Running stage 'example_source'" in proc.stdout and "Running stage 'import_raw'" in proc.stdout
    assert "Data and pipelines are up to date." in run_dvc("status", cwd=project).stdout
    # The committed dvc.lock still holds: the import is byte-for-byte reproducible.
    assert git_changes(project) == "", "dvc.lock is out of date with the code: run `dvc repro` and commit it"
    assert md5sum(project, RAW) == lock_md5(project)


def test_push_and_pull_through_the_local_remote(project):
    md5 = lock_md5(project)
    run_dvc("push", cwd=project)
    remote = project / "var" / "dvc-remote"
    assert any(p.is_file() for p in remote.rglob("*")), "the local remote received no files"

    (project / RAW).unlink()
    run(["rm", "-rf", ".dvc/cache"], cwd=project)
    assert "not in cache:       data/raw/data.parquet" in run_dvc("status", cwd=project).stdout
    run_dvc("pull", cwd=project)
    assert md5sum(project, RAW) == md5
    assert "Data and pipelines are up to date." in run_dvc("status", cwd=project).stdout


def test_dvc_api_reads_params_and_every_committed_data_version(project):
    assert dvc.api.params_show(repo=str(project))["dataset"]["target"]["column"] == "churn"
    v1 = pd.read_parquet(stdio.BytesIO(dvc.api.read(RAW, repo=str(project), mode="rb")))
    assert v1.shape == (7043, 21)

    source = pd.read_csv(project / "data" / "source" / "telco_churn.csv").head(5000)
    source.to_csv(project / "data" / "source" / "telco_churn_v2.csv", index=False)
    set_params(project, dataset={"source": {"uri": "data/source/telco_churn_v2.csv"}})
    v1_md5 = lock_md5(project)
    run_dvc("repro", "import_raw", cwd=project)
    assert lock_md5(project) != v1_md5
    run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "v2"], cwd=project)

    # Each commit's dvc.lock names one data version; dvc.api reads any of them from the cache.
    old = pd.read_parquet(stdio.BytesIO(dvc.api.read(RAW, repo=str(project), rev="HEAD~1", mode="rb")))
    new = pd.read_parquet(stdio.BytesIO(dvc.api.read(RAW, repo=str(project), rev="HEAD", mode="rb")))
    assert len(old) == 7043 and len(new) == 5000
    pd.testing.assert_frame_equal(old, v1)
