"""ml.io's all-or-nothing writes: a killed writer's temporary file is cleaned up later; a full disk is named."""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml import io
from tests.conftest import REPO

KILLED_WRITER = """
import os, signal, sys
from ml import io
with io.atomic_output(sys.argv[1]) as tmp:
    tmp.write_text("half a report")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    report = tmp_path / "drift" / "2026-10-01.html"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(report)], cwd=REPO)
    assert killed.returncode == -9
    left = hidden(report.parent)
    assert len(left) == 1 and left[0].startswith(".2026-10-01.html.tmp-") and not report.exists()

    io.write_json({"day": 2}, str(report.parent / "2026-10-02.json"))  # the next night's output, same folder
    assert hidden(report.parent) == []


def test_a_live_writers_temporary_file_is_left_alone_unless_idle_for_a_day(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".out.parquet.tmp-{alive.pid}-0123abcd"
        idle = tmp_path / f".old.parquet.tmp-{alive.pid}-4567cdef"
        other = tmp_path / ".notes.tmp-keep"  # not one of ours: never touched
        for path in (busy, idle, other):
            path.write_text("x")
        day_ago = time.time() - io.STALE_SECONDS - 60
        os.utime(idle, (day_ago, day_ago))
        io.write_json({"v": 1}, str(tmp_path / "out.json"))
        assert hidden(tmp_path) == sorted([busy.name, other.name])
    finally:
        alive.kill()
        alive.wait()


def test_a_full_disk_names_the_file_and_the_free_space_and_keeps_the_old_version(tmp_path):
    target = tmp_path / "predictions" / "2026-10-01.parquet"
    io.write_json({"v": 1}, str(target))
    with pytest.raises(io.DiskFullError) as raised, io.atomic_output(str(target)) as tmp:
        tmp.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")  # what the writer's write() raises
    message = str(raised.value)
    assert f"while writing {target} (" in message and "MiB free on the file system of" in message
    assert "free some space" in message and raised.value.errno == errno.ENOSPC
    assert io.read_json(str(target)) == {"v": 1} and hidden(target.parent) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 KiB file system (tmpfs; needs root, else the test is skipped)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_is_reported_by_name(tiny_disk):
    target = tiny_disk / "report.json"
    io.write_json({"small": True}, str(target))
    with pytest.raises(io.DiskFullError, match=r"no space left on the device while writing .*report\.json \("):
        io.write_json({"big": "x" * 200_000}, str(target))
    assert io.read_json(str(target)) == {"small": True} and hidden(tiny_disk) == []


def test_a_fifo_a_device_or_a_folder_under_a_days_name_is_refused_naming_it_not_read_without_end(tmp_path):
    """A FIFO nobody writes to would block a day's run until its max_runtime, and a link to /dev/zero
    would be hashed for ever: each is refused at once, naming the file and what it is."""
    fifo, zero, folder = (tmp_path / f"2026-10-0{n}.parquet" for n in (2, 3, 4))
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    folder.mkdir()
    probe = (
        "import sys\nfrom ml import io\nuri = sys.argv[1]\n"
        "for read in (lambda: io.open_parquet_and_md5(uri).__enter__(), lambda: io.read_table_and_md5(uri),\n"
        "             lambda: io.read_parquet_and_md5(uri), lambda: io.open_parquet(uri).__enter__()):\n"
        "    try:\n        read()\n    except io.UnreadableParquetError as error:\n        print(error)\n"
    )
    for path, kind in ((fifo, "a FIFO"), (zero, "a character device"), (folder, "a folder")):
        done = subprocess.run(
            [sys.executable, "-c", probe, str(path)], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        lines = done.stdout.splitlines()
        assert lines == [f"{path} is {kind}, not a regular file; it was not read"] * 4, (lines, done.stderr[-2000:])


def test_a_json_file_or_a_hashed_file_that_is_a_fifo_or_a_link_to_a_device_is_refused_not_read_without_end(tmp_path):
    """rollout.json made a link to /dev/zero filled a server's memory (17 GB in 12 s, `/health` ok) and a
    FIFO there blocked its poll for good; a FIFO or a device under a hashed file's name was hashed for ever.
    (read_json is not tried on /dev/zero here: the old code would fill this machine's memory too.)"""
    fifo, zero = tmp_path / "rollout.json", tmp_path / "zero.json"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    probe = (
        "import sys\nfrom ml import io\n"
        "try:\n    getattr(io, sys.argv[2])(sys.argv[1])\nexcept io.NotARegularFileError as error:\n    print(error)\n"
    )
    for path, kind, read in (
        (fifo, "a FIFO", "read_json"),
        (fifo, "a FIFO", "file_digest"),
        (zero, "a character device", "file_digest"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, str(path), read], cwd=REPO, capture_output=True, text=True, timeout=30
        )
        assert done.stdout.splitlines() == [f"{path} is {kind}, not a regular file; it was not read"], (
            read,
            done.stderr[-2000:],
        )


def test_a_fifo_named_by_a_local_or_file_colon_uri_is_refused_not_read_without_end(tmp_path):
    """`local:///…` and `file:/…` are local files to fsspec, but the check looked only at plain paths and
    `file://`: a day's file so named that is a FIFO blocked its reader for good."""
    fifo = tmp_path / "2026-10-02.parquet"
    os.mkfifo(fifo)
    probe = (
        "import sys\nfrom ml import io\n"
        "try:\n    io.read_table_and_md5(sys.argv[1])\nexcept io.NotARegularFileError as error:\n    print(error)\n"
    )
    for uri in (f"local://{fifo}", f"file:{fifo}"):
        done = subprocess.run([sys.executable, "-c", probe, uri], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert done.stdout.splitlines() == [f"{uri} is a FIFO, not a regular file; it was not read"], done.stderr[
            -2000:
        ]


def test_a_checked_file_deleted_since_its_check_is_refused_naming_it_and_what_checked_it(tmp_path):
    import pandas as pd

    path = tmp_path / "labels" / "2026-10-05.parquet"
    path.parent.mkdir()
    pd.DataFrame({"customer_id": ["C1"], "churn": ["Yes"]}).to_parquet(path, index=False)
    md5 = io.file_digest(str(path), "md5")
    assert len(io.read_checked_parquet(str(path), md5, "labels 2026-10-05")) == 1
    path.unlink()
    with pytest.raises(io.ChangedFileError, match=rf"{path} is gone: it is the version labels 2026-10-05 .*\({md5}\)"):
        io.read_checked_parquet(str(path), md5, "labels 2026-10-05")


def test_a_checked_file_emptied_since_its_check_is_refused_as_changed_naming_it(tmp_path):
    """Before, the emptied file was parsed first: pyarrow's "Could not open Parquet input source '<Buffer>'",
    naming neither the file nor what checked it."""
    import pandas as pd

    path = tmp_path / "labels" / "2026-10-05.parquet"
    path.parent.mkdir()
    pd.DataFrame({"customer_id": ["C1"], "churn": ["Yes"]}).to_parquet(path, index=False)
    md5 = io.file_digest(str(path), "md5")
    path.write_bytes(b"")
    with pytest.raises(
        io.ChangedFileError, match=rf"{path} \(md5 d41d8cd98f00b204e9800998ecf8427e\) is not the version"
    ):
        io.read_checked_parquet(str(path), md5, "labels 2026-10-05")
