"""An alert when the endpoint's request log cannot write or drops rows (serving/request_log.py).

Each serving process writes its log's counts beside the log once a write failed or a row was
dropped; this sensor compares them with what it saw last (its cursor) and alerts when an outage
begins (rows wait in the local spool), when it ends (the spool is written) and whenever rows were
dropped, naming the process, the counts and the reasons. An outage that goes on is alerted once.
A server that finds a process of its spool stopped without its final flush (SIGKILL) counts it; each
such stop is alerted once, naming that process, when it started and flushed last, and what may be missing.
"""

from __future__ import annotations

import json

import dagster as dg

from orchestration.notify import notify
from orchestration.sensor_guard import alerting
from resources.storage import ArtifactStore
from serving.request_log import read_status, unclean_stop_text, wal_failing_text

COUNTS = ("failed_flushes", "rows_dropped", "rows_pending", "unclean_stops", "wal_failing")


def request_log_alerts(statuses: list[dict], cursor: str | None) -> tuple[list[str], str]:
    """(alert texts, the new cursor: each process's counts as last seen)."""
    seen = json.loads(cursor) if cursor else {}
    texts = []
    for status in statuses:
        process = status.get("process", "?")
        last = dict.fromkeys(COUNTS, 0) | seen.get(process, {})
        pending, error = status.get("rows_pending", 0), "; ".join(status.get("last_errors") or [])[-300:]
        where = f"the request log of serving process {process}"
        if status.get("rows_dropped", 0) > last["rows_dropped"]:
            reasons = ", ".join(f"{n} {reason}" for reason, n in (status.get("rows_dropped_by_reason") or {}).items())
            texts.append(
                f"Keel: {where} dropped {status['rows_dropped'] - last['rows_dropped']} row(s) "
                f"({reasons}); {pending} row(s) wait to be written"
            )
        elif pending and not last["rows_pending"] and status.get("failed_flushes", 0) > last["failed_flushes"]:
            texts.append(
                f"Keel: {where} cannot write to the artifact store ({error}); {pending} row(s) wait in its "
                f"local spool {status.get('spool')} and are retried"
            )
        elif last["rows_pending"] and not pending:
            texts.append(f"Keel: {where} writes again; every spooled row was written")
        elif not pending and status.get("failed_flushes", 0) > last["failed_flushes"]:
            # Began and ended between two ticks (the status could not be written while the store was down).
            texts.append(
                f"Keel: {where} could not write to the artifact store for a while ({error}); every row was "
                "written since"
            )
        failing = status.get("wal_failing")
        if failing and not last["wal_failing"]:
            texts.append(f"Keel: {where}: {wal_failing_text(status.get('spool', '?'), failing)}")
        elif last["wal_failing"] and not failing:
            texts.append(f"Keel: {where} writes its write-ahead file again; its rows are safe from a kill")
        found = status.get("unclean_stops", 0) - last["unclean_stops"]
        for stop in (status.get("unclean_stop_details") or [])[-found:] if found > 0 else []:
            texts.append(f"Keel: the request log of serving process {process} found that {unclean_stop_text(stop)}")
        seen[process] = {k: status.get(k) or 0 for k in COUNTS}
    return texts, json.dumps(seen, sort_keys=True)


@dg.sensor(
    name="alert_on_request_log",
    minimum_interval_seconds=60,
    description=(
        "Every minute (once turned on): sends an alert when the endpoint's request log cannot write to "
        "the artifact store (its rows wait in a local spool and are retried), when it writes again, "
        "whenever it dropped rows (with the reasons), and when a serving process stopped without its final "
        "flush (killed: its last rows may be missing), to the webhook in KEEL_ALERT_WEBHOOK_URL; without "
        "it, writes the alert to the tick's log."
    ),
)
@alerting
def alert_on_request_log(context: dg.SensorEvaluationContext, storage: ArtifactStore):
    texts, cursor = request_log_alerts(read_status(storage.root), context.cursor)
    if not texts:
        return dg.SensorResult(skip_reason="the request log wrote every row", cursor=cursor)
    text = "\n".join(texts)
    sent = notify(text, context.log, instance=context.instance, key=f"request-log:{context.cursor}:{text}")
    return dg.SensorResult(skip_reason=None if sent else f"webhook off: {text}"[:1000], cursor=cursor)
