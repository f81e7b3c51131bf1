"""Alert delivery never holds a sensor up and sends each alert once; a sensor tick that fails alerts.

The webhooks are real HTTP servers on 127.0.0.1: one that takes the request and then answers one
byte every few seconds, and a plain one that records what it was sent."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.notify import WEBHOOK_VARIABLE
from resources.params import ParamsResource
from tests.conftest import REPO
from tests.orchestration.test_alerts import Receiver
from tests.orchestration.test_sensors import drift_event, evaluate


class TricklingWebhook:
    """Reads each POST whole, then answers `HTTP/1.1 200 OK...` one byte every `pause` seconds."""

    def __init__(self, pause: float = 5.0, answer_for: float = 40.0) -> None:
        self.posts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.pause, self.answer_for, self.stopped = pause, answer_for, threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(4096)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(body) < length:
                body += connection.recv(4096)
            self.posts += 1
            end = time.monotonic() + self.answer_for
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                if time.monotonic() > end or self.stopped.wait(self.pause):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def trickling(monkeypatch: pytest.MonkeyPatch):
    webhook = TricklingWebhook()
    monkeypatch.setenv(WEBHOOK_VARIABLE, webhook.url)
    yield webhook
    webhook.close()


def test_a_trickling_webhook_holds_a_tick_a_few_seconds_and_gets_each_alert_once(trickling: TricklingWebhook):
    with dg.instance_for_test() as instance:
        first = evaluate("alert_on_monitoring", instance, {})
        drift_event(instance, "2026-10-15", True)
        started = time.monotonic()
        result = evaluate("alert_on_monitoring", instance, {}, first.cursor)
        took = time.monotonic() - started
        assert took < 8, f"the tick waited {took:.1f} s on the webhook"
        assert trickling.posts == 1 and result.cursor != first.cursor
        # The same alert again (as a tick that failed before its cursor moved would see it): not resent.
        started = time.monotonic()
        evaluate("alert_on_monitoring", instance, {}, first.cursor)
        assert time.monotonic() - started < 3 and trickling.posts == 1


def test_a_failed_sensor_tick_sends_an_alert_naming_the_sensor_once(tmp_path: Path, monkeypatch):
    webhook = Receiver()
    monkeypatch.setenv(WEBHOOK_VARIABLE, webhook.url)
    root = tmp_path / "project"
    root.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["daily"]["labels"] = "nosuchprotocol://bucket/labels/{date}.parquet"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    resources = {"params": ParamsResource(project_dir=str(root))}
    try:
        with dg.instance_for_test() as instance:
            for _ in range(2):  # the daemon ticks again a minute later: the same failure, one alert
                with pytest.raises(Exception, match="nosuchprotocol"):
                    evaluate("labels_arrived", instance, resources)
        [text] = webhook.texts()
        assert text.startswith("Keel: sensor labels_arrived failed its tick: ValueError: ")
        assert "nosuchprotocol" in text
    finally:
        webhook.server.shutdown()


def test_a_failed_schedule_tick_sends_an_alert_naming_the_schedule_once(tmp_path: Path, monkeypatch):
    """The incoming folder replaced by a file (a mount gone wrong): the 02:00 tick fails, and a person hears
    of it; before, the failed tick raised no alert (the sensor said only "no snapshot files found")."""
    import datetime as dt

    from tests.orchestration.test_arrival_sensors import schedule_tick

    webhook = Receiver()
    monkeypatch.setenv(WEBHOOK_VARIABLE, webhook.url)
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "incoming").write_text("not a folder")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    try:
        with dg.instance_for_test() as instance:
            for _ in range(2):  # the next night: the same failure, one alert a day
                with pytest.raises(Exception, match="nightly_scoring_schedule"):
                    schedule_tick(instance, root, dt.datetime(2026, 10, 31, 2, 0, tzinfo=dt.UTC))
        [text] = webhook.texts()
        assert text.startswith("Keel: schedule nightly_scoring_schedule failed its tick: NotADirectoryError")
        assert "data/incoming" in text
    finally:
        webhook.server.shutdown()


def test_an_invalid_date_in_a_file_name_is_named_not_waited_for(tmp_path: Path):
    root = tmp_path / "project"
    (root / "data" / "incoming").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "data" / "incoming" / "2026-13-45.parquet").write_bytes(b"")
    resources = {"params": ParamsResource(project_dir=str(root))}
    with dg.instance_for_test() as instance:
        result = evaluate("incoming_arrived", instance, resources)
    assert not result.run_requests
    message = result.skip_message
    assert "2026-13-45" in message and "not a partition yet" not in message
    assert "2026-13-45.parquet: no valid date in its name" in message


@pytest.mark.parametrize("sensor, folder", [("incoming_arrived", "incoming"), ("labels_arrived", "labels")])
def test_a_folder_under_a_days_file_name_is_named_not_ignored(tmp_path: Path, sensor: str, folder: str):
    """A day written as a folder of part files (as Spark writes Parquet) is no file the day's run can read."""
    root = tmp_path / "project"
    (root / "data" / folder / "2026-10-09.parquet").mkdir(parents=True)
    (root / "data" / folder / "2026-10-09.parquet" / "part-00000.parquet").write_bytes(b"PAR1")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    resources = {"params": ParamsResource(project_dir=str(root))}
    with dg.instance_for_test() as instance:
        result = evaluate(sensor, instance, resources)
    assert not result.run_requests
    assert f"data/{folder}/2026-10-09.parquet: a folder, not a file" in result.skip_message


@pytest.mark.parametrize("sensor, folder", [("incoming_arrived", "incoming"), ("labels_arrived", "labels")])
def test_a_fifo_or_a_link_to_a_device_under_a_days_name_is_named_as_what_it_is(
    tmp_path: Path, sensor: str, folder: str
):
    """Neither is a folder: the reason says what the thing is, so the person looks for the right fault."""
    root = tmp_path / "project"
    (root / "data" / folder).mkdir(parents=True)
    os.mkfifo(root / "data" / folder / "2026-10-09.parquet")
    (root / "data" / folder / "2026-10-10.parquet").symlink_to("/dev/zero")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    resources = {"params": ParamsResource(project_dir=str(root))}
    with dg.instance_for_test() as instance:
        result = evaluate(sensor, instance, resources)
    assert not result.run_requests
    for day in ("2026-10-09", "2026-10-10"):
        assert f"data/{folder}/{day}.parquet: a FIFO, device or socket, not a file" in result.skip_message


def test_a_day_delivered_as_a_symbolic_link_is_taken_in_and_odd_names_are_named_not_ignored(tmp_path: Path):
    """A link to the day's file elsewhere is that file; a link to nothing, and a file the folder's wildcard finds
    under a name that is not a day's (a browser's `(1)`, a date without zeros), are named, not skipped in silence."""
    import pandas

    root = tmp_path / "project"
    incoming = root / "data" / "incoming"
    incoming.mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    delivered = tmp_path / "share" / "2026-10-09.parquet"
    delivered.parent.mkdir()
    pandas.DataFrame({"customer_id": ["C1"]}).to_parquet(delivered)  # whole: a fresh file is judged by its frame
    (incoming / "2026-10-09.parquet").symlink_to(delivered)
    (incoming / "2026-10-10.parquet").symlink_to(tmp_path / "nowhere.parquet")
    (incoming / "2026-10-11.parquet").symlink_to("2026-10-11.parquet")  # a loop
    odd = ("2026-10-14.PARQUET", "2026-10-15.parquet ", "2026-10-16.parquet.csv", "2026-10-17.Parquet")
    for name in ("2026-10-12(1).parquet", "2026-10-6.parquet", ".2026-10-13.parquet", "notes.txt", *odd):
        (incoming / name).write_bytes(b"PAR1")
    resources = {"params": ParamsResource(project_dir=str(root))}
    with dg.instance_for_test() as instance:
        result = evaluate("incoming_arrived", instance, resources)
        [request] = result.run_requests
        assert request.partition_key == "2026-10-09" and request.tags["keel/file"].endswith(
            "incoming/2026-10-09.parquet"
        )
        instance.add_run(  # the day ran: the next tick launches nothing and names the odd files
            dg.DagsterRun(
                job_name="nightly_scoring",
                run_id="0" * 8 + "-0000-0000-0000-000000000000",
                status=dg.DagsterRunStatus.SUCCESS,
                tags={"dagster/run_key": request.run_key},
            )
        )
        message = evaluate("incoming_arrived", instance, resources).skip_message
    assert "incoming/2026-10-10.parquet: a symbolic link to nothing readable" in message
    assert "incoming/2026-10-11.parquet: a symbolic link to nothing readable" in message
    assert "incoming/2026-10-12(1).parquet: not named as '{date}.parquet'" in message
    assert "incoming/2026-10-6.parquet: not named as '{date}.parquet'" in message
    assert ".2026-10-13" not in message and "a folder" not in message  # hidden: a writer's temporary file
    for name in odd:  # beyond the wildcard `*.parquet`: before, not named at all ("no snapshot files found")
        assert f"incoming/{name}: not named as '{{date}}.parquet'" in message, name
    assert "notes.txt" not in message  # no date in its name: not a delivery of a day


def test_a_request_log_outage_is_alerted_when_it_begins_and_ends(tmp_path: Path, monkeypatch, spec, telco_raw):
    import datetime as dt

    from resources.storage import ArtifactStore
    from serving.request_log import RequestLog, day_folder, input_columns

    webhook = Receiver()
    monkeypatch.setenv(WEBHOOK_VARIABLE, webhook.url)
    storage = ArtifactStore(root=str(tmp_path / "store"))
    at = dt.datetime(2026, 10, 5, 10, tzinfo=dt.UTC)
    blocker = Path(day_folder(storage.root, "2026-10-05"))
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the day's folder belongs")
    log = RequestLog(storage.root, spec, flush_seconds=3600, spool_dir=tmp_path / "spool")
    base = {"received_at": at, "arm": "champion", "model_version": 1, "status": 200, "score": 0.3, "served": True}
    records = telco_raw.head(20)[input_columns(spec)].to_dict("records")
    log.append({**row, **base, "request_id": f"r{i}"} for i, row in enumerate(records))
    try:
        with dg.instance_for_test() as instance:
            quiet = evaluate("alert_on_request_log", instance, {"storage": storage})
            assert quiet.skip_message == "the request log wrote every row" and not webhook.bodies
            log.flush()  # the write fails: spooled
            down = evaluate("alert_on_request_log", instance, {"storage": storage}, quiet.cursor)
            [text] = webhook.texts()
            assert "cannot write to the artifact store" in text and "20 row(s) wait in its local spool" in text
            log.flush()  # still down: the same outage is not alerted again
            still = evaluate("alert_on_request_log", instance, {"storage": storage}, down.cursor)
            assert len(webhook.texts()) == 1
            blocker.unlink()
            log.flush()
            evaluate("alert_on_request_log", instance, {"storage": storage}, still.cursor)
            assert webhook.texts()[1].endswith("writes again; every spooled row was written")
    finally:
        log.close()
        webhook.server.shutdown()


def test_a_request_log_outage_that_began_and_ended_between_two_ticks_is_alerted(tmp_path: Path):
    """While the store is down the server cannot write its status there either: a tick may see the outage only
    after it ended. Before, an outage no tick saw while it lasted was never alerted."""
    from orchestration.request_log_alerts import request_log_alerts

    status = {"process": "p1", "rows_pending": 0, "failed_flushes": 0, "last_errors": []}
    texts, cursor = request_log_alerts([status], None)
    assert texts == []
    over = status | {"failed_flushes": 7, "last_errors": ["2026-10-05T10:00:00+00:00 writing 20 rows: OSError: gone"]}
    [text], cursor = request_log_alerts([over], cursor)
    assert text.startswith("Keel: the request log of serving process p1 could not write to the artifact store for a")
    assert "OSError: gone" in text and text.endswith("every row was written since")
    assert request_log_alerts([over], cursor)[0] == []  # once


def test_a_request_log_status_folder_that_is_a_file_fails_the_tick_and_alerts(tmp_path: Path, monkeypatch):
    from resources.storage import ArtifactStore
    from serving.request_log import STATUS_FOLDER, serving_uri

    webhook = Receiver()
    monkeypatch.setenv(WEBHOOK_VARIABLE, webhook.url)
    storage = ArtifactStore(root=str(tmp_path / "store"))
    folder = Path(serving_uri(storage.root, STATUS_FOLDER))
    folder.parent.mkdir(parents=True)
    folder.write_text("a file where the status folder belongs")
    try:
        with dg.instance_for_test() as instance, pytest.raises(Exception, match="is a file"):
            evaluate("alert_on_request_log", instance, {"storage": storage})
        [text] = webhook.texts()
        assert text.startswith("Keel: sensor alert_on_request_log failed its tick: NotADirectoryError:")
        assert str(folder) in text
    finally:
        webhook.server.shutdown()


@pytest.mark.parametrize("sensor,folder", [("incoming_arrived", "incoming"), ("labels_arrived", "labels")])
def test_a_days_file_still_being_written_waits_until_it_is_complete(tmp_path: Path, sensor: str, folder: str):
    """A day's file copied in in chunks is seen by the tick half-written: launched, each partial version would
    fail (with its retries) and alert about a day that is only arriving. It waits, named, until it ends as a
    Parquet file does; one that stays broken is launched once it has not changed for the grace period."""
    import pandas as pd

    from orchestration.arrivals import WRITING_GRACE_SECONDS

    root = tmp_path / "project"
    (root / "data" / folder).mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    whole = tmp_path / "whole.parquet"
    pd.DataFrame({"customer_id": [f"C{i}" for i in range(500)], "churn": ["No"] * 500}).to_parquet(whole)
    data = whole.read_bytes()
    day = root / "data" / folder / "2026-10-09.parquet"
    day.write_bytes(data[: len(data) // 2])
    resources = {"params": ParamsResource(project_dir=str(root))}
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("batch_predictions", partition="2026-10-09"))
        waiting = evaluate(sensor, instance, resources)
        assert not waiting.run_requests
        assert "2026-10-09" in waiting.skip_message and "still being written" in waiting.skip_message

        stale = time.time() - WRITING_GRACE_SECONDS - 5  # broken for good: its run fails naming it
        os.utime(day, (stale, stale))
        assert [r.partition_key for r in evaluate(sensor, instance, resources).run_requests] == ["2026-10-09"]

        day.write_bytes(data)  # complete
        assert [r.partition_key for r in evaluate(sensor, instance, resources).run_requests] == ["2026-10-09"]


@pytest.mark.parametrize(("sensor", "folder"), [("incoming_arrived", "incoming"), ("labels_arrived", "labels")])
def test_a_file_a_parquet_writer_has_just_opened_waits_though_it_ends_with_the_magic_bytes(
    tmp_path: Path, sensor: str, folder: str
):
    """pyarrow's ParquetWriter writes the leading magic bytes when it opens the file and nothing more until its
    first row group: the file is exactly b"PAR1", which also ends as a Parquet file does. Launched, its run would
    fail on a 4-byte file and alert about a day that is only arriving."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "project"
    (root / "data" / folder).mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    day = root / "data" / folder / "2026-10-09.parquet"
    schema = pa.schema([("customer_id", pa.string()), ("churn", pa.string())])
    resources = {"params": ParamsResource(project_dir=str(root))}
    with dg.instance_for_test() as instance, pq.ParquetWriter(day, schema) as writer:
        instance.report_runless_asset_event(dg.AssetMaterialization("batch_predictions", partition="2026-10-09"))
        assert day.read_bytes() == b"PAR1"
        waiting = evaluate(sensor, instance, resources)
        assert not waiting.run_requests and "still being written" in waiting.skip_message
        writer.write_table(pa.table({"customer_id": ["C1"], "churn": ["No"]}, schema=schema))
    assert pq.read_table(day).num_rows == 1
