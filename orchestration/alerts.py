"""Alerts that reach a person (orchestration/notify.py): a failed run, with the blocking checks that
failed in it; the start and end of a drift episode; every move of the champion or challenger alias.

A failed blocking check always fails its run, so the run's alert names the checks and their problems.
Drift verdicts and alias moves are read from the materializations of drift_report and
registered_model (every alias move, by promotion, approve or rollback, is recorded there).
"""

from __future__ import annotations

import contextlib
import json

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES

from assets.drift_report import drift_report
from assets.registered_model import registered_model
from orchestration.notify import WebhookError, keep_undelivered, notify, resend_undelivered, run_link
from orchestration.sensor_guard import alerting


def will_retry(run: dg.DagsterRun, instance: dg.DagsterInstance) -> bool:
    """True when the daemon will launch this failed run again (run retries), so it is not final yet.

    A run launched outside a code location (`dagster job execute`, `execute_in_process`) has no job origin:
    the daemon cannot launch it again, whatever its tags say, so its failure is final."""
    if run.remote_job_origin is None:
        return False
    backfill_id = run.tags.get("dagster/backfill")
    if backfill_id is not None:
        # The daemon does not retry a run whose backfill has ended (a job backfill ends once its runs are
        # launched), though the run's tag says it will: its failure is final, as the daemon decides it.
        backfill = instance.get_backfill(backfill_id)
        if backfill is None or backfill.status in BULK_ACTION_TERMINAL_STATUSES:
            return False
    tag = run.tags.get("dagster/will_retry")
    if tag is not None:
        return tag == "true"
    retries = int(run.tags.get("dagster/max_retries", "0") or 0)
    return instance.run_retries_enabled and int(run.tags.get("dagster/retry_number", "0")) < retries


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    lines = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        records = getattr(evaluation.metadata.get("failures"), "records", None) or []
        problems = [f"{r.data.get('column')}: {r.data.get('problem')}" for r in records]
        error = evaluation.metadata.get("error")
        problems += [str(error.value)] if error else []
        kind = "blocking check" if evaluation.blocking else "check"
        detail = f" ({'; '.join(problems[:3])})" if problems else ""
        lines.append(f"{kind} {evaluation.asset_key.to_user_string()}/{evaluation.check_name} failed{detail}")
    return lines


def _own_words(error) -> str:
    """The error's message past Dagster's wrappers: "Error occurred while executing op …" says where, its
    cause says why (e.g. "Model Version (name=…, version=99) not found")."""
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error.message.strip()


def _step_errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    errors = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data
        text = (data.user_failure_data.description if data.user_failure_data else None) or (
            _own_words(data.error) if data.error else entry.dagster_event.message
        )
        errors.append(f"{entry.dagster_event.step_key}: {text}"[:400])
    return errors


def failure_text(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> str:
    day = run.tags.get("dagster/partition")
    retry = run.tags.get("dagster/retry_number")
    head = (
        f"Keel: {run.job_name} failed"
        + (f" for {day}" if day else "")
        + f" (run {run.run_id[:8]}"
        + (f", retry {retry}" if retry else "")
        + ")"
    )
    # A failed blocking check is the cause its step error only repeats; otherwise the steps' errors.
    details = _failed_checks(instance, run.run_id) or _step_errors(instance, run.run_id) or [message]
    return f"{head}: " + " | ".join(details) + run_link(run.run_id)


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    minimum_interval_seconds=30,
    description=(
        "Every 30 seconds (once turned on): sends an alert for every failed run of this code location (the blocking checks that failed "
        "and the step errors), once no run retry is left, to the webhook in KEEL_ALERT_WEBHOOK_URL; "
        "without it, writes the alert to the tick's log. An alert the webhook did not take is sent again "
        "by a later tick of this sensor or of alert_on_monitoring."
    ),
)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    with contextlib.suppress(WebhookError):  # still failing: this run's alert is kept below as well
        resend_undelivered(context.log, context.instance)
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    if will_retry(run, context.instance):
        # Logged, not a SkipReason: one tick handles every failed run since the cursor, and a SkipReason
        # beside another run's reaction fails the whole tick, which then never moves on (no alert ever again).
        context.log.info(f"run {run.run_id[:8]} of {run.job_name} failed and will be retried; no alert yet")
        return None
    text = failure_text(context.instance, run, context.failure_event.message or "")
    key = f"run-failure:{run.run_id}"
    try:
        notify(text, context.log, instance=context.instance, key=key)
    except WebhookError:
        # Dagster moves this sensor's cursor past the run whatever happens: keep the alert, a later tick
        # (this sensor's or alert_on_monitoring's) sends it again.
        keep_undelivered(context.instance, key, text)
        raise
    return None


def _records(instance: dg.DagsterInstance, key: dg.AssetKey, after: int) -> list[dg.EventLogRecord]:
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1000, ascending=True
    ).records


def _drift_text(day: str, meta: dict, drifting: bool) -> str:
    if not drifting:
        return f"Keel: drift ended on {day}: no drift against model v{meta.get('model_version')}'s reference"
    columns = ", ".join(meta.get("drifted_columns") or []) or "none"
    link = f" {meta['report_url']}" if meta.get("report_url") else ""
    return (
        f"Keel: drift episode began on {day} (model v{meta.get('model_version')}): drifted columns "
        f"{columns} carry {meta.get('drift_share', 0):.2f} of its importance, prediction drift "
        f"{meta.get('prediction_drift')}{link}"
    )


def _move_text(meta: dict) -> str:
    move = meta["alias_move"]
    kind = {"rollback": "rolled back", "approve": "approved"}.get(move.get("kind"), "promoted")
    old = f"v{move['from_version']}" if move.get("from_version") is not None else "none"
    new = f"v{move['to_version']}" if move.get("to_version") is not None else "none"  # a rolled-back challenger
    return f"Keel: {move['model']} {move['alias']} {kind}: {old} -> {new} by {move.get('actor')}: {move.get('reason')}"


def monitoring_alerts(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[str], str]:
    """(alert texts since the cursor, the new cursor). The first tick starts from now: old news is no alert."""
    state = json.loads(cursor) if cursor else None
    if state is None:
        latest = [r.storage_id for k in (drift_report.key, registered_model.key) for r in _records_last(instance, k)]
        last_drift = _records_last(instance, drift_report.key)
        drifting = bool(last_drift and last_drift[0].asset_materialization.metadata["drift_detected"].value)
        return [], json.dumps({"after": max(latest, default=0), "drifting": drifting})
    records = sorted(
        _records(instance, drift_report.key, state["after"]) + _records(instance, registered_model.key, state["after"]),
        key=lambda r: r.storage_id,
    )
    texts, drifting = [], state["drifting"]
    for record in records:
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        if record.asset_key == drift_report.key:
            if bool(meta.get("drift_detected")) != drifting:
                drifting = not drifting
                texts.append(_drift_text(record.partition_key, meta, drifting))
        elif "alias_move" in meta:
            texts.append(_move_text(meta))
    after = records[-1].storage_id if records else state["after"]
    return texts, json.dumps({"after": after, "drifting": drifting})


def _records_last(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dg.EventLogRecord]:
    return instance.fetch_materializations(key, limit=1).records


@dg.sensor(
    name="alert_on_monitoring",
    minimum_interval_seconds=60,
    description=(
        "Every minute (once turned on): sends an alert when a drift episode begins or ends (drift_report's verdict) and when the "
        "champion or challenger alias moves (promotion, approve, rollback: registered_model), to the "
        "webhook in KEEL_ALERT_WEBHOOK_URL; without it, writes the alert to the tick's log. An alert "
        "that could not be delivered is sent again at the next tick, and so is a run-failure alert."
    ),
)
@alerting
def alert_on_monitoring(context: dg.SensorEvaluationContext):
    resend_undelivered(context.log, context.instance)  # run-failure alerts the webhook did not take
    texts, cursor = monitoring_alerts(context.instance, context.cursor)
    if not texts:
        return dg.SensorResult(skip_reason="no drift episode began or ended and no alias moved", cursor=cursor)
    # One message per tick: a delivery that fails raises before the cursor moves, and is sent whole again.
    text = "\n".join(texts)
    sent = notify(text, context.log, instance=context.instance, key=f"monitoring:{context.cursor}:{text}")
    reason = None if sent else f"webhook off ({len(texts)} alerts in the log): " + " | ".join(texts)[:900]
    return dg.SensorResult(skip_reason=reason, cursor=cursor)


ALERT_SENSORS = [alert_on_run_failure, alert_on_monitoring]
