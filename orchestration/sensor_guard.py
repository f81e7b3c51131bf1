"""A failed sensor or schedule tick reaches a person: `alerting` wraps a sensor's (or schedule's) function so that an exception
sends an alert naming the sensor and the error (once a day per sensor and error), then fails the tick
as before, so the tick shows the error and the cursor does not move."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable

import dagster as dg

from orchestration.notify import WebhookError, notify


def failure_alert(sensor: str, error: BaseException, kind: str = "sensor") -> str:
    return f"Keel: {kind} {sensor} failed its tick: {type(error).__name__}: {str(error)[:600]}"


def alerting(fn: Callable) -> Callable:
    """The sensor function `fn`, alerting on any exception (its name is the sensor's)."""
    names = list(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WebhookError:
            raise  # the webhook itself failed: another alert through it would fail too
        except Exception as error:
            context = kwargs[names[0]] if names[0] in kwargs else args[0]
            kind = "schedule" if isinstance(context, dg.ScheduleEvaluationContext) else "sensor"
            text = failure_alert(fn.__name__, error, kind)
            day = dt.datetime.now(dt.UTC).date().isoformat()
            key = f"sensor-failed:{fn.__name__}:{type(error).__name__}:{error}:{day}"
            try:
                notify(text, context.log, instance=context.instance, key=key)
            except Exception as problem:  # never hide the tick's own error behind the alert's
                context.log.error(f"{text} (and the alert was not delivered: {problem})")
            raise

    return guarded
