"""The request log is per-row safe and durable: an odd row is refused alone, a failed write is spooled
on local disk and retried (also after a restart), and every row that is dropped is counted with why."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest

from orchestration.request_log_alerts import request_log_alerts
from serving import request_log
from serving.request_log import RequestLog, day_folder, input_columns, read_day, read_status

DAY = "2026-10-05"
AT = dt.datetime.fromisoformat(f"{DAY}T10:00:00+00:00")


@pytest.fixture
def rows(telco_raw, spec) -> list[dict]:
    return telco_raw.head(60)[input_columns(spec)].to_dict("records")


def entry(row: dict, request_id, status: int = 200, **changes) -> dict:
    base = {"request_id": request_id, "received_at": AT, "arm": "champion", "model_version": 1}
    base |= {"manifest_sha256": "abc", "latency_ms": 2.5, "status": status, "score": 0.4, "served": status == 200}
    return {**row, **base, **changes}


def logged_ids(store_root: str) -> list[str]:
    log = read_day(store_root, DAY)
    return sorted(log["request_id"]) if not log.empty else []


def test_an_odd_row_is_refused_or_kept_alone_never_with_its_flush(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    good = [entry(row, f"good-{i}") for i, row in enumerate(rows[:50])]
    # A 422 row whose request id is a number and whose tenure is text: logged as text and null.
    odd = entry({**rows[50], "tenure": "abc", "contract": {"a": 1}}, 7, status=422, score=None)
    broken = entry(rows[51], "no-time", received_at="yesterday")  # cannot be placed on a day at all
    log.append([good[0], odd, broken, *good[1:]])
    log.close()
    assert logged_ids(store) == sorted(["7", *(f"good-{i}" for i in range(50))])
    frame = read_day(store, DAY).set_index("request_id")
    assert pd.isna(frame.loc["7", "tenure"]) and frame.loc["7", "status"] == 422
    assert frame.loc["7", "contract"] == '{"a": 1}'
    status = log.status()
    assert status["rows_logged"] == 51 and status["rows_pending"] == 0
    assert status["rows_dropped_by_reason"] == {"refused: received_at is not a time": 1}


def _block(store: str) -> Path:
    """Make the day's folder unwritable (a file where the folder should be; root ignores chmod)."""
    folder = Path(day_folder(store, DAY))
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder")
    return folder


def test_a_failed_write_is_spooled_retried_and_counted(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    blocker = _block(store)
    log = RequestLog(store, spec, flush_seconds=0.1, spool_dir=tmp_path / "spool")
    log.append(entry(row, f"outage-{i}") for i, row in enumerate(rows[:40]))
    deadline = dt.datetime.now() + dt.timedelta(seconds=20)
    while log.status()["rows_spooled"] < 40 or not read_status(store):
        assert dt.datetime.now() < deadline, log.status()
    status = log.status()
    assert status["failed_flushes"] >= 1 and status["rows_pending"] == 40 and status["rows_dropped"] == 0
    assert DAY in status["last_errors"][-1] and "Error" in status["last_errors"][-1]
    # The alert sensor's view: the counts are in the store beside the log.
    assert read_status(store)[0]["rows_pending"] == 40
    blocker.unlink()  # the folder is writable again: the spool drains by itself
    log.append(entry(row, f"after-{i}") for i, row in enumerate(rows[40:50]))
    deadline = dt.datetime.now() + dt.timedelta(seconds=20)
    while log.status()["rows_pending"]:
        assert dt.datetime.now() < deadline, log.status()
    log.close()
    assert logged_ids(store) == sorted([*(f"outage-{i}" for i in range(40)), *(f"after-{i}" for i in range(10))])
    assert log.status()["rows_logged"] == 50 and not list((tmp_path / "spool").rglob("*.parquet"))


def test_a_store_that_takes_no_write_shows_on_health_until_it_does_with_a_full_spool_named(tmp_path, spec, rows):
    # The status files the alert sensor reads are in the same store: /health is where the outage shows.
    store = str(tmp_path / "store")
    blocker = _block(store)
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool", spool_max_mb=0)
    assert log.problems() == []
    log.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    log.flush()  # fails; the spool's cap is 0, so the rows go back to memory
    [problem] = log.problems()
    assert problem["reason"].startswith(f"the request log cannot write to the store {store} since ")
    assert "0 row(s) wait in the spool" in problem["reason"] and "10 in memory, retried" in problem["reason"]
    assert "the spool is at its cap (serving.log_spool_max_mb 0): further rows wait in memory" in problem["reason"]
    assert log.status()["store_failing"]["since"] == problem["since"] and log.status()["spool_full"]
    blocker.unlink()
    log.flush()
    assert log.problems() == [] and logged_ids(store) == sorted(f"r{i}" for i in range(10))
    log.close()


def test_rows_spooled_before_a_restart_are_written_by_the_next_process(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    blocker = _block(store)
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    first.append(entry(row, f"before-{i}") for i, row in enumerate(rows[:30]))
    first.close()  # the store is still down when the server stops
    assert first.status()["rows_spooled"] == 30 and logged_ids(store) == []
    blocker.unlink()
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    assert second.status()["rows_pending"] == 30  # seen at start, before any new request
    second.close()
    assert logged_ids(store) == sorted(f"before-{i}" for i in range(30))
    # Written under the name it was spooled with, so a retry that raced another never duplicates rows.
    assert len(read_day(store, DAY)) == 30


def test_a_spool_file_lost_or_cut_short_is_counted_and_never_holds_up_the_rest(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    blocker = _block(store)
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    for batch in range(3):  # three flushes: three spooled files of 10 rows
        log.append(entry(row, f"b{batch}-{i}") for i, row in enumerate(rows[10 * batch : 10 * batch + 10]))
        log.flush()
    first, second, third = sorted((tmp_path / "spool").rglob("*.parquet"))
    first.unlink()  # removed by hand (or a temp-folder cleaner)
    with open(second, "r+b") as handle:  # cut short: not a Parquet file any more
        handle.truncate(100)
    blocker.unlink()  # the store is back
    log.flush()
    # The third file is written; the lost rows are counted with the reason, for the alert sensor.
    assert logged_ids(store) == sorted(f"b2-{i}" for i in range(10))
    status = log.status()
    assert status["rows_pending"] == 0 and status["rows_logged"] == 10
    assert status["rows_dropped"] == 20, status
    assert set(status["rows_dropped_by_reason"]) == {
        "spool file vanished before it was written",
        "spool file unreadable (set aside as .unreadable)",
    }
    assert read_status(store)[0]["rows_dropped"] == 20
    assert second.with_suffix(".unreadable").exists()  # kept aside for a person, never copied to the store
    log.close()


def test_beyond_the_bounds_rows_are_dropped_and_counted_not_silently(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    _block(store)
    unwritable_spool = tmp_path / "spool-is-a-file"
    unwritable_spool.write_text("")
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=unwritable_spool, max_pending_rows=25)
    log.append(entry(row, f"r{i}") for i, row in enumerate(rows[:20]))
    log.flush()  # neither the store nor the spool takes them: they wait in memory
    log.append(entry(row, f"s{i}") for i, row in enumerate(rows[20:40]))
    log.flush()  # (the spool failing, the append also woke the writer: this waits for it)
    status = log.status()
    assert status["rows_pending"] == 25
    assert status["rows_dropped_by_reason"] == {"queue full (the store and the spool both failed)": 15}


def test_a_foreign_file_in_the_log_is_skipped_and_named(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    log.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    log.close()
    folder = Path(day_folder(store, DAY))
    (folder / "notes.txt").write_text("not parquet")
    pd.DataFrame({"request_id": [1, 2], "x": [1.0, 2.0]}).to_parquet(folder / "other.parquet")
    skipped: list[str] = []
    frame = read_day(store, DAY, skipped)
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(10))
    assert len(skipped) == 2 and "notes.txt" in skipped[0] and "other.parquet" in skipped[1]


def test_a_fifo_or_device_in_the_log_is_skipped_not_read_without_end(tmp_path, spec, rows):
    """A FIFO would block the reader (canary_bake's tick, served_requests) for ever; a device never ends."""
    import os
    import threading

    store = str(tmp_path / "store")
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    log.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    log.close()
    folder = Path(day_folder(store, DAY))
    os.mkfifo(folder / "stray.parquet")
    (folder / "zero.parquet").symlink_to("/dev/zero")
    skipped: list[str] = []
    read: list[pd.DataFrame] = []
    reader = threading.Thread(target=lambda: read.append(read_day(store, DAY, skipped)), daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert read, "read_day did not return: it read the FIFO"
    assert sorted(read[0]["request_id"]) == sorted(f"r{i}" for i in range(10))
    assert len(skipped) == 2 and all("not a regular file" in problem for problem in skipped), skipped


def test_a_copy_of_a_days_folder_under_another_name_is_not_read_as_another_day(tmp_path, spec, rows):
    """`day=2026-10-05.bak` or `day=2026-10-05 (copy)` beside the day: canary_bake read each as one more day,
    counting every request of the copy twice, without a word."""
    from orchestration.rollout_sensor import bake_requests

    store = str(tmp_path / "store")
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    log.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    log.close()
    folder = Path(day_folder(store, DAY))
    for copy in ("day=2026-10-04.bak", "day=2026-10-04 (copy)", "day=2026-10-4", "day=２０２６-10-04"):
        shutil.copytree(folder, folder.parent / copy)
    ignored: list[str] = []
    frame = bake_requests(store, AT - dt.timedelta(days=2), AT + dt.timedelta(hours=1), ignored)
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(10))
    assert len(ignored) == 4 and all("not named day=YYYY-MM-DD" in problem for problem in ignored), ignored


def test_a_copy_of_a_log_file_in_the_days_folder_is_read_once_and_named(tmp_path, spec, rows):
    """`cp <file>.parquet <file>-backup.parquet` in a day's folder: canary_bake read the copy as more
    requests, counting each of its requests twice, without a word."""
    from orchestration.rollout_sensor import bake_requests

    store = str(tmp_path / "store")
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    log.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    log.close()
    [file] = Path(day_folder(store, DAY)).glob("*.parquet")
    shutil.copy(file, file.with_name("backup.parquet"))
    ignored: list[str] = []
    frame = bake_requests(store, AT - dt.timedelta(days=2), AT + dt.timedelta(hours=1), ignored)
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(10))
    [problem] = ignored
    names = sorted([file.name, "backup.parquet"])  # the later of the two in the listing is left out
    assert problem.endswith(f"{names[1]}: holds the same requests as {names[0]} (a copy?); they were read once")


def test_a_spool_two_servers_share_is_written_once_and_never_counted_as_dropped(tmp_path, spec, rows):
    # A rolling restart: the new server starts while the old one still holds spooled rows (the store down),
    # and both drain the spool they share (one per store) once the store is back.
    store = str(tmp_path / "store")
    blocker = _block(store)
    old = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    old.append(entry(row, f"r{i}") for i, row in enumerate(rows[:20]))
    old.flush()
    new = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    blocker.unlink()
    new.flush()  # the new server writes the old one's spooled file to the store first
    old.close()
    assert logged_ids(store) == sorted(f"r{i}" for i in range(20))
    # The old server finds its file gone from the spool because it is in the store: not a loss to alert on.
    assert old.status()["rows_dropped"] == 0, old.status()
    assert old.status()["rows_pending"] == 0
    assert all(status["rows_dropped"] == 0 for status in read_status(store))
    new.close()


def test_a_process_marker_is_taken_only_from_a_process_that_is_gone(tmp_path, spec):
    # The marker of a process that stopped without its final flush (tests/serving/test_unclean_stop.py kills a
    # real server); here the cases a live server cannot show: a pid reused by another process, another host.
    store = str(tmp_path / "store")
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    folder = first.spool / "processes"
    now = dt.datetime.now(dt.UTC)
    base = {"started": "2026-10-05T09:00:00+00:00", "flush_seconds": 2.0, "flush_rows": 20000}
    markers = {
        "reused": {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": "1", "last_flush": AT.isoformat()},
        "silent": {"host": "another-host", "pid": 7, "last_flush": (now - dt.timedelta(hours=1)).isoformat()},
        "flushing": {"host": "another-host", "pid": 8, "last_flush": now.isoformat()},
    }
    for name, marker in markers.items():
        (folder / f"{name}.json").write_text(json.dumps({**base, **marker, "process": name}))
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    # This process's first log is alive (same pid, same start): never taken.
    assert sorted(stop["process"] for stop in second.unclean_stops) == ["reused", "silent"]
    alive = [f"{first._prefix}.json", f"{second._prefix}.json", "flushing.json"]
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(alive)
    assert len(second.problems()) == 2 and "up to 20000 row(s)" in second.problems()[0]["reason"]
    assert first.unclean_stops == []
    second.close()
    first.close()
    assert sorted(p.name for p in folder.glob("*.json")) == ["flushing.json"]  # a clean stop removes its own


def _killed(log: RequestLog) -> None:
    """As if the process were killed now: its writer thread never flushes again (its interval is an hour, it is
    never woken) and its marker says its pid is another process's, so the next log of the spool takes it."""
    marker = json.loads(log._marker.read_text())
    log._marker.write_text(json.dumps({**marker, "pid_start": "1"}))


def test_a_segment_whose_flush_reached_the_store_before_the_kill_is_not_written_twice(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    first.append(entry(row, f"a{i}") for i, row in enumerate(rows[:20]))
    segment = first._wal_path(1)
    written = segment.read_bytes()
    first.flush()  # the 20 rows reach the store and their segment is deleted ...
    assert not segment.exists() and logged_ids(store) == sorted(f"a{i}" for i in range(20))
    segment.write_bytes(written)  # ... unless the kill came between the two
    first.append(entry(row, f"b{i}") for i, row in enumerate(rows[20:30]))  # only in memory and segment 2
    assert first._wal_path(2).exists()
    _killed(first)
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    [stop] = second.unclean_stops
    assert (stop["rows_recovered"], stop["rows_already_logged"], stop["rows_lost"]) == (10, 20, 0), stop
    assert logged_ids(store) == sorted([*(f"a{i}" for i in range(20)), *(f"b{i}" for i in range(10))])  # once each
    assert "10 row(s) it had not written were recovered" in second.problems()[0]["reason"]
    assert "20 more were already logged" in second.problems()[0]["reason"]
    assert list(second.spool.glob(f"processes/{first._prefix}*")) == []
    second.close()
    assert list(second.spool.glob("processes/*")) == []  # a clean stop leaves no marker and no segment


def test_a_segment_cut_short_by_the_kill_keeps_its_whole_records_and_counts_the_rest(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    segment = first._wal_path(1)
    segment.write_bytes(segment.read_bytes()[:-40])  # the kill came while the last record was written
    _killed(first)
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    [stop] = second.unclean_stops
    assert (stop["rows_recovered"], stop["rows_lost"]) == (9, 1), stop
    assert logged_ids(store) == sorted(f"r{i}" for i in range(9))
    assert "1 row(s) were lost (a record cut short by the kill)" in second.problems()[0]["reason"]
    assert second.status()["rows_recovered"] == 9
    second.close()


def test_rows_queued_again_after_a_failed_flush_stay_in_the_write_ahead_file_once(tmp_path, spec, rows):
    # The store down and no room in the spool: the flush puts its rows back in the queue, and in the current
    # segment (its own is deleted), so a kill then loses none and the recovery writes none twice.
    store = str(tmp_path / "store")
    blocker = _block(store)
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool", spool_max_mb=0)
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[:20]))
    first.flush()
    assert first.status()["rows_pending"] == 20
    assert not first._wal_path(1).exists() and first._wal_path(2).exists()
    first.flush()  # queued again once more: still one copy of each row
    assert [p.name.rsplit("-", 1)[1] for p in first._own_segments()] == ["000003"]
    _killed(first)
    blocker.unlink()
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    assert second.unclean_stops[0]["rows_recovered"] == 20
    assert logged_ids(store) == sorted(f"r{i}" for i in range(20))
    second.close()


def test_segments_left_by_a_server_killed_while_it_recovered_them_are_written_by_the_next(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    segment = first._wal_path(1)
    first._marker.unlink()  # taken by a server that was killed before it wrote the segment
    recent = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    assert recent.unclean_stops == [] and segment.exists()  # a fresh segment may be its taker's work in progress
    old = segment.stat().st_mtime - 3600
    os.utime(segment, (old, old))
    later = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    [stop] = later.unclean_stops
    assert stop["orphaned"] and stop["rows_recovered"] == 10 and not segment.exists()
    assert "the server that found it stopped before" in later.problems()[0]["reason"]
    assert logged_ids(store) == sorted(f"r{i}" for i in range(10))
    for log in (later, recent):
        log.close()


def test_a_write_ahead_file_that_fails_on_and_off_stays_failing_from_its_first_failure(tmp_path, spec, rows):
    # On a full disk each new segment may take the blocks the last one freed: writes fail and succeed by turns.
    # Before, each success ended the failure, so /health read ok between them and "since" moved to the last one.
    log = RequestLog(str(tmp_path / "store"), spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    folder = log.spool / "processes"
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    log.append([entry(rows[0], "r0")])
    first = log.status()["wal_failing"]
    for i in range(1, 5):
        if i % 2:  # the write goes through
            folder.unlink()
        else:  # and fails again
            shutil.rmtree(folder)
            folder.write_text("not a folder")
        log.append([entry(rows[i], f"r{i}")])
        assert log.status()["wal_failing"] == first and log.problems(), i
    folder.unlink()
    log.close()


def test_a_write_ahead_file_that_cannot_be_written_degrades_health_alerts_and_writes_at_once(tmp_path, spec, rows):
    # The spool's processes/ folder is a file (or its disk is full): rows are not safe from a kill.
    store = str(tmp_path / "store")
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    folder = log.spool / "processes"
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    log.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    [problem] = log.problems()
    assert "cannot write its write-ahead file" in problem["reason"] and "would be lost" in problem["reason"]
    assert log.status()["wal_failing"]["error"].startswith(("NotADirectoryError", "FileExistsError"))
    deadline = dt.datetime.now() + dt.timedelta(seconds=10)
    while logged_ids(store) != sorted(f"r{i}" for i in range(10)) and dt.datetime.now() < deadline:
        log._thread.join(0.1)  # woken by the append, not after its hour
    assert logged_ids(store) == sorted(f"r{i}" for i in range(10))
    texts, cursor = request_log_alerts(read_status(store), None)
    assert len(texts) == 1 and "cannot write its write-ahead file" in texts[0], texts
    assert request_log_alerts(read_status(store), cursor)[0] == []  # an outage that goes on is alerted once
    folder.unlink()
    log.append([entry(rows[10], "r10")])
    log._wal_failed_at -= request_log.WAL_RECOVERED_SECONDS  # and no failure for that long
    log.append([entry(rows[11], "r11")])
    assert log.problems() == [] and log.status()["wal_failing"] is None
    log.flush()
    texts, _ = request_log_alerts(read_status(store), cursor)
    assert texts == [
        f"Keel: the request log of serving process {log._prefix} writes its write-ahead file again; its rows are safe from a kill"
    ]
    log.close()


def test_spooled_files_a_neighbour_leaves_after_this_server_started_are_written_by_it(tmp_path, spec, rows):
    # A rolling restart in a store outage: the old server spools rows after the new one started, then stops.
    store = str(tmp_path / "store")
    blocker = _block(store)
    new = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    old = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    old.append(entry(row, f"r{i}") for i, row in enumerate(rows[:30]))
    old.close()  # its 30 rows are in the spool
    assert new.status()["rows_pending"] == 0
    blocker.unlink()
    new.flush()
    assert logged_ids(store) == sorted(f"r{i}" for i in range(30))
    assert new.status()["rows_pending"] == 0 and new.status()["rows_dropped"] == 0
    assert list(new.spool.glob("day=*/*.parquet")) == []
    new.close()


def test_rows_recovered_while_the_store_is_down_are_said_to_wait_in_the_spool_not_to_be_written(tmp_path, spec, rows):
    store = str(tmp_path / "store")
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[:15]))
    _killed(first)
    blocker = _block(store)
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    [stop] = second.unclean_stops
    assert stop["rows_recovered"] == 15 and stop["rows_waiting"] == 15
    reason = second.problems()[0]["reason"]
    assert "wait to be written to the request log (15 in the spool" in reason and "and written to" not in reason
    blocker.unlink()
    second.close()
    assert logged_ids(store) == sorted(f"r{i}" for i in range(15))


def test_a_running_server_with_a_long_flush_interval_writes_a_killed_neighbours_rows_soon(
    tmp_path, spec, rows, monkeypatch
):
    # Flushes an hour apart: the spool and stopped neighbours are still looked at every LOOK_AROUND_SECONDS.
    monkeypatch.setattr(request_log, "LOOK_AROUND_SECONDS", 0.1)
    store = str(tmp_path / "store")
    survivor = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    killed = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    killed.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    _killed(killed)
    deadline = dt.datetime.now() + dt.timedelta(seconds=10)
    while logged_ids(store) != sorted(f"r{i}" for i in range(10)) and dt.datetime.now() < deadline:
        survivor._thread.join(0.1)
    assert logged_ids(store) == sorted(f"r{i}" for i in range(10))
    assert [stop["rows_recovered"] for stop in survivor.unclean_stops] == [10]
    survivor.close()


@pytest.mark.parametrize("then", ["a request", "no request"])
def test_a_write_ahead_folder_removed_under_a_running_server_is_written_again_with_every_queued_row(
    tmp_path, spec, rows, then
):
    # A cleaner removes the spool's processes/ folder: the open segment has no name any more. The next request's
    # write looks at once, and with none the idle writer does. Before, only a write looked, at most once a second,
    # so a kill in that second lost every row in memory with nothing to report it.
    store = str(tmp_path / "store")
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    shutil.rmtree(first.spool / "processes")
    sent = 15 if then == "a request" else 10
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[10:sent], start=10))
    deadline = dt.datetime.now() + dt.timedelta(seconds=10)
    while not first._wal_path(1).exists() and dt.datetime.now() < deadline:
        first._thread.join(0.05)
    assert first._marker.exists() and first._wal_path(1).exists()
    _killed(first)
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    [stop] = second.unclean_stops
    assert stop["rows_recovered"] == sent and logged_ids(store) == sorted(f"r{i}" for i in range(sent))
    second.close()


def test_a_kill_after_the_write_ahead_file_failed_on_a_full_disk_is_not_reported_as_losing_nothing(
    tmp_path, spec, rows, monkeypatch
):
    store = str(tmp_path / "store")
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    segment = first._wal

    class FullDisk:
        def write(self, data):
            raise OSError(28, "No space left on device")

        flush = close = write
        fileno = segment.fileno  # the segment keeps its name: only its writes fail

    def no_new_blocks(*args):  # the marker's replacement needs new blocks; its own block is still there
        raise OSError(28, "No space left on device")

    first._wal = FullDisk()
    monkeypatch.setattr(request_log.os, "replace", no_new_blocks)
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[10:15], start=10))  # in memory only
    monkeypatch.undo()
    assert json.loads(first._marker.read_text())["wal_errors"] == 1  # written in place
    _killed(first)
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    reason = second.problems()[0]["reason"]
    assert "10 row(s) it had not written were recovered" in reason and "none lost" not in reason
    assert "its write-ahead file failed 1 time(s) from " in reason and "may be missing" in reason
    second.close()


def test_a_server_killed_while_its_write_ahead_file_failed_is_reported_by_the_next(tmp_path, spec, rows):
    # processes/ a file: no write-ahead file and no marker; the status written as the failure began tells.
    store = str(tmp_path / "store")
    spool = tmp_path / "spool"
    first = RequestLog(store, spec, flush_seconds=3600, spool_dir=spool)
    shutil.rmtree(first.spool / "processes")
    (first.spool / "processes").write_text("not a folder")
    first.append(entry(row, f"r{i}") for i, row in enumerate(rows[:10]))
    first.flush()
    [status_file] = Path(store, "serving", "request_log_status").glob("*.json")
    status = json.loads(status_file.read_text())
    assert status["wal_failing"] and status["process"] == first._prefix
    status_file.write_text(json.dumps({**status, "pid_start": "1"}))  # as if its pid were another process's now
    (first.spool / "processes").unlink()
    second = RequestLog(store, spec, flush_seconds=3600, spool_dir=spool)
    [stop] = second.unclean_stops
    assert stop["process"] == first._prefix
    [problem] = second.problems()
    assert "stopped without its final flush while its write-ahead file failed" in problem["reason"]
    assert "may be missing" in problem["reason"]
    second.flush()
    texts, _ = request_log_alerts(read_status(store), None)
    assert any("while its write-ahead file failed" in text for text in texts), texts
    assert [s["process"] for s in read_status(store)] == [second._prefix]  # reported once: its status went
    third = RequestLog(store, spec, flush_seconds=3600, spool_dir=spool)
    assert third.unclean_stops == []
    for log in (third, second):
        log.close()


def test_rows_a_flush_holds_while_it_writes_them_are_counted_as_pending(tmp_path, spec, rows, monkeypatch):
    store = str(tmp_path / "store")
    log = RequestLog(store, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    log.append(entry(row, f"r{i}") for i, row in enumerate(rows[:12]))
    seen = []
    save = log._save

    def save_and_look(day, day_rows, name):
        seen.append(log.status()["rows_pending"])  # while the flush holds them, before they are written
        return save(day, day_rows, name)

    monkeypatch.setattr(log, "_save", save_and_look)
    log.flush()
    assert seen == [12] and log.status()["rows_pending"] == 0 and log.status()["rows_logged"] == 12
    log.close()
