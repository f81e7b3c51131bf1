"""Alerts reach a person: a failed run (with its failed blocking check), a drift episode and an alias
move are POSTed as JSON to the webhook from KEEL_ALERT_WEBHOOK_URL, here a loopback HTTP receiver."""

import http.server
import json
import shutil
import threading
from pathlib import Path

import dagster as dg
import pytest

from demo.story import launch
from orchestration import alerts
from orchestration.alerts import alert_on_run_failure, monitoring_alerts
from orchestration.definitions import definitions
from orchestration.deployments import local
from orchestration.notify import WEBHOOK_VARIABLE
from tests.conftest import REPO
from tests.orchestration.test_sensors import daemon_origin, drift_event, evaluate, materialize

SECRET_PATH = "/services/T000/B000/s3cr3t-token"


class Receiver:
    """A webhook on 127.0.0.1 that records each JSON body and answers `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers["Content-Length"])
                assert self.path == SECRET_PATH and self.headers["Content-Type"] == "application/json"
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{SECRET_PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch):
    receiver = Receiver()
    monkeypatch.setenv(WEBHOOK_VARIABLE, receiver.url)
    monkeypatch.setattr("orchestration.notify.time.sleep", lambda seconds: None)
    yield receiver
    receiver.server.shutdown()


def failed_scoring_run(tmp_path: Path, instance) -> dg.ExecuteInProcessResult:
    """A nightly run whose day has a value outside its range: the blocking `validity` check fails."""
    root = tmp_path / "project"
    (root / "data" / "incoming").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    from ml.example_data import example_frame
    from ml.ingest import with_ids
    from ml.params import load_params

    params = load_params(root / "params.yaml")
    day = with_ids(example_frame("telco_churn"), params.dataset).head(200)
    day = day[params.dataset.expected_columns(include_target=False)].copy()
    day.loc[0, "tenure"] = 999  # beyond ranges.tenure.max
    day.to_parquet(root / "data" / "incoming" / "2026-10-02.parquet", index=False)
    return launch(definitions(local(root)), "nightly_scoring", instance, partition_key="2026-10-02")


def run_failure_alert(instance, run_id: str) -> None:
    """What alert_on_run_failure does for the failed run `run_id`, as the daemon's tick would call it."""
    [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
    )
    return alert_on_run_failure(context.for_run_failure())


def test_a_failed_run_names_its_failed_blocking_check_in_the_alert(tmp_path: Path, webhook: Receiver, caplog):
    with dg.instance_for_test() as instance:  # no run retries: this failure is final
        result = failed_scoring_run(tmp_path, instance)
        assert not result.success
        run_failure_alert(instance, result.run_id)
    [text] = webhook.texts()
    assert text.startswith(f"Keel: nightly_scoring failed for 2026-10-02 (run {result.run_id[:8]})")
    assert "blocking check incoming_data/validity failed (tenure: 1 value(s) outside [0.0, 120.0])" in text
    assert webhook.url not in caplog.text and "s3cr3t" not in caplog.text  # the secret never reaches a log


def test_a_run_that_will_be_retried_is_not_alerted_yet(webhook: Receiver):
    with dg.instance_for_test(overrides={"run_retries": {"enabled": True}}) as instance:
        job = definitions(local(REPO)).resolve_job_def("nightly_scoring")  # its dagster/max_retries: retried
        run = instance.create_run_for_job(job, tags=job.tags, remote_job_origin=daemon_origin("nightly_scoring"))
        instance.report_run_failed(run, "the code server went away")
        assert run_failure_alert(instance, run.run_id) is None
    assert not webhook.bodies


@pytest.mark.parametrize("backfill", ["COMPLETED", "REQUESTED"])
def test_a_failed_run_of_an_ended_backfill_is_alerted_though_its_tag_says_it_will_retry(webhook: Receiver, backfill):
    """The daemon does not retry a run whose backfill has ended (a job backfill ends once its runs are launched),
    while the run's `dagster/will_retry` stays "true". Before, the alert waited for that retry for ever."""
    import time

    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    with dg.instance_for_test(overrides={"run_retries": {"enabled": True}}) as instance:
        instance.add_backfill(
            PartitionBackfill(
                backfill_id="bf1",
                status=BulkActionStatus(backfill),
                from_failure=False,
                tags={},
                backfill_timestamp=time.time(),
            )
        )
        job = definitions(local(REPO)).resolve_job_def("nightly_scoring")
        tags = {**job.tags, "dagster/backfill": "bf1"}
        run = instance.create_run_for_job(job, tags=tags, remote_job_origin=daemon_origin("nightly_scoring"))
        instance.report_run_failed(run, "no file for the day")
        instance.add_run_tags(run.run_id, {"dagster/will_retry": "true"})
        run_failure_alert(instance, run.run_id)
    if backfill == "COMPLETED":
        [text] = webhook.texts()
        assert text.startswith(f"Keel: nightly_scoring failed (run {run.run_id[:8]})") and "no file for the day" in text
    else:  # the backfill still runs: the daemon retries the run, the alert waits for the last try
        assert not webhook.bodies


def test_a_run_launched_outside_the_code_location_is_alerted_though_retries_are_on(tmp_path: Path, webhook: Receiver):
    """`dagster job execute` (the README's way to run a job by hand): the daemon cannot launch it again, so its
    failure is final. Before, the alert waited for a retry that never came."""
    with dg.instance_for_test(overrides={"run_retries": {"enabled": True}}) as instance:
        result = failed_scoring_run(tmp_path, instance)
        assert instance.get_run_by_id(result.run_id).tags.get("dagster/will_retry") == "true"  # what Dagster says
        run_failure_alert(instance, result.run_id)
    [text] = webhook.texts()
    assert text.startswith("Keel: nightly_scoring failed for 2026-10-02")


def test_a_step_that_raised_is_alerted_with_its_error_not_dagsters_wrapper(webhook: Receiver):
    """An unexpected exception reaches Dagster wrapped ("Error occurred while executing op …"); the alert
    says what the exception said. Before, an approve of a version that does not exist alerted only
    the wrapper."""

    @dg.op
    def approve_challenger():
        raise LookupError("Model Version (name=churn, version=99) not found")

    @dg.job
    def approve():
        approve_challenger()

    with dg.instance_for_test() as instance:
        result = approve.execute_in_process(instance=instance, raise_on_error=False)
        run_failure_alert(instance, result.run_id)
    [text] = webhook.texts()
    assert "approve_challenger: LookupError: Model Version (name=churn, version=99) not found" in text
    assert "Error occurred while executing op" not in text


def test_drift_episodes_and_alias_moves_are_alerted_once_and_resent_after_a_failed_delivery(webhook: Receiver):
    with dg.instance_for_test() as instance:
        drift_event(instance, "2026-10-14", False)
        first = evaluate("alert_on_monitoring", instance, {})
        assert not webhook.bodies  # the first tick starts from now: history is no news

        for day in ("2026-10-15", "2026-10-16"):
            drift_event(instance, day, True)
        move = {"model": "telco_churn", "alias": "champion", "from_version": 1, "to_version": 2, "kind": "promote"}
        move |= {"reason": "auto-promoted after the evaluation gate", "actor": "registered_model"}
        materialize(instance, "registered_model", None, alias_move=dg.MetadataValue.json(move))
        webhook.status = 500  # the receiver is down: the tick fails and its cursor does not move
        with pytest.raises(Exception, match=r"alert webhook \(KEEL_ALERT_WEBHOOK_URL\) answered HTTP 500") as error:
            evaluate("alert_on_monitoring", instance, {}, first.cursor)
        assert "s3cr3t" not in str(error.value)

        webhook.status, webhook.bodies[:] = 200, []
        sent = evaluate("alert_on_monitoring", instance, {}, first.cursor)
        [text] = webhook.texts()
        assert text.splitlines() == [
            "Keel: drift episode began on 2026-10-15 (model v1): drifted columns monthly_charges carry 0.40 of its "
            "importance, prediction drift True",
            # As Slack receives it: its escapes for & < > (it shows "v1 -> v2").
            "Keel: telco_churn champion promoted: v1 -&gt; v2 by registered_model: auto-promoted after the evaluation gate",
        ]
        drift_event(instance, "2026-10-17", True)  # the same episode: no new alert
        drift_event(instance, "2026-10-18", False)
        evaluate("alert_on_monitoring", instance, {}, sent.cursor)
        assert webhook.texts()[1] == "Keel: drift ended on 2026-10-18: no drift against model v1's reference"


def test_alerts_are_off_without_the_variable_and_go_to_the_tick_log(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(WEBHOOK_VARIABLE, raising=False)
    with dg.instance_for_test() as instance:
        texts, cursor = monitoring_alerts(instance, None)
        drift_event(instance, "2026-10-15", True)
        result = evaluate("alert_on_monitoring", instance, {}, cursor)
    assert "webhook off (1 alerts in the log): Keel: drift episode began on 2026-10-15" in result.skip_message


def test_a_reason_and_a_user_reach_the_webhook_as_plain_text(webhook: Receiver):
    """A rollback's reason and its `dagster/user` tag are whatever the launcher typed: no mention, no link."""
    with dg.instance_for_test() as instance:
        first = evaluate("alert_on_monitoring", instance, {})
        move = {"model": "telco_churn", "alias": "champion", "from_version": 2, "to_version": 1, "kind": "rollback"}
        move |= {"reason": "<!channel> see <https://evil.example|the runbook> & <@U024BE7LH> @here", "actor": "<!here>"}
        materialize(instance, "registered_model", None, alias_move=dg.MetadataValue.json(move))
        evaluate("alert_on_monitoring", instance, {}, first.cursor)
    [text] = webhook.texts()
    assert "<" not in text and ">" not in text and "@here" not in text
    assert text == (
        "Keel: telco_churn champion rolled back: v2 -&gt; v1 by &lt;!here&gt;: &lt;!channel&gt; see "
        "&lt;https://evil.example|the runbook&gt; &amp; &lt;@U024BE7LH&gt; @\u2060here"
    )


def test_a_tick_with_a_final_failure_and_a_run_to_be_retried_alerts_the_final_one(webhook: Receiver, monkeypatch):
    """The daemon hands the sensor every failed run since its cursor in one tick: a run the daemon will retry
    beside a final failure must neither fail the tick (which then never moves on) nor hide the alert."""

    def tick(cursor: str | None = None):
        with dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name="alert_on_run_failure") as context:
            return alert_on_run_failure.evaluate_tick(context)

    # The daemon's answer for each run (will_retry is tested on its own); a tick sees only runs without an origin.
    monkeypatch.setattr(alerts, "will_retry", lambda run, instance: run.tags["dagster/max_retries"] != "0")
    with dg.instance_for_test(overrides={"run_retries": {"enabled": True}}) as instance:
        cursor = tick().cursor  # the first tick starts from now
        job = definitions(local(REPO)).resolve_job_def("nightly_scoring")
        for day, retries in (("2026-10-03", "0"), ("2026-10-02", "2"), ("2026-10-04", "0")):  # 10-02 will be retried
            tags = {"dagster/max_retries": retries, "dagster/partition": day}
            instance.report_run_failed(instance.create_run_for_job(job, tags=tags), f"the file of {day} is bad")
        result = tick(cursor)
        assert result.cursor != cursor  # the tick moved on
        tick(result.cursor)  # a later tick sends nothing again
    texts = webhook.texts()
    assert len(texts) == 2 and "for 2026-10-03" in texts[0] and "for 2026-10-04" in texts[1], texts
    assert "the file of 2026-10-03 is bad" in texts[0]


def test_a_run_failure_alert_the_webhook_refused_is_sent_again_by_a_later_tick(webhook: Receiver):
    """Dagster moves a run-failure sensor's cursor past a run even when its alert failed: the alert is kept."""
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, sensor_name="alert_on_run_failure") as context:
            cursor = alert_on_run_failure.evaluate_tick(context).cursor
        job = definitions(local(REPO)).resolve_job_def("nightly_scoring")
        tags = {"dagster/partition": "2026-10-03"}
        instance.report_run_failed(instance.create_run_for_job(job, tags=tags), "the file of 2026-10-03 is bad")
        webhook.status = 500  # the webhook is down while the run fails
        with dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name="alert_on_run_failure") as context:
            failed = alert_on_run_failure.evaluate_tick(context)
        assert failed.dagster_run_reactions[0].error is not None  # the tick shows the failed delivery
        refused = len(webhook.bodies)  # each attempt reached the webhook and was answered 500
        webhook.status = 200
        evaluate("alert_on_monitoring", instance, {})  # its next tick sends it
        evaluate("alert_on_monitoring", instance, {})  # and only once
    texts = webhook.texts()[refused:]
    assert len(texts) == 1 and "nightly_scoring failed for 2026-10-03" in texts[0], texts


def test_a_webhook_url_without_its_scheme_never_leaks_and_its_alert_is_kept(webhook: Receiver, monkeypatch, caplog):
    """A URL pasted without `https://` is a secret all the same: no error or log line may show it, and the run's
    alert is kept, so it is sent once the variable is corrected."""
    secret = "hooks.example.com/services/T000/B000/s3cr3t"
    monkeypatch.setenv(WEBHOOK_VARIABLE, secret)
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, sensor_name="alert_on_run_failure") as context:
            cursor = alert_on_run_failure.evaluate_tick(context).cursor
        job = definitions(local(REPO)).resolve_job_def("nightly_scoring")
        tags = {"dagster/partition": "2026-10-03"}
        instance.report_run_failed(instance.create_run_for_job(job, tags=tags), "the file of 2026-10-03 is bad")
        with dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name="alert_on_run_failure") as context:
            failed = alert_on_run_failure.evaluate_tick(context)
        error = failed.dagster_run_reactions[0].error
        assert error is not None and "is not an http(s) URL" in str(error)
        assert "s3cr3t" not in str(error) and "s3cr3t" not in caplog.text
        monkeypatch.setenv(WEBHOOK_VARIABLE, webhook.url)  # corrected: the kept alert goes out
        evaluate("alert_on_monitoring", instance, {})
    [text] = webhook.texts()
    assert "nightly_scoring failed for 2026-10-03" in text


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_webhook_that_redirects_is_not_followed_and_the_alert_is_not_counted_as_delivered(status: int):
    """urllib followed a 301 or 302 as a GET without the alert; the target's 200 made it "delivered", so the
    alert was recorded as sent and never seen by anyone."""
    from orchestration.notify import WebhookError, post

    methods: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            methods.append(self.command)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/moved":
                self.send_response(status)
                self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = answer  # noqa: N815 - http.server's naming

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(WebhookError, match=f"answered HTTP {status} \\(a redirect, not followed"):
            post(f"http://127.0.0.1:{server.server_port}/moved", "drift on tenure")
    finally:
        server.shutdown()
    assert methods == ["POST"]
