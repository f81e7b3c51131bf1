"""The alert notifier: a JSON POST to a webhook (Slack incoming-webhook compatible: {"text": ...}).

Every message is sent as plain text: `&`, `<` and `>` are escaped as Slack's rules ask, so a reason,
a user name or a column name cannot mention `<!channel>`, draw a link `<url|text>` or open a user's
profile (`<@U123>`); `@channel`, `@here`, `@all` and `@everyone` (the mentions Mattermost and Discord
webhooks read in plain text) get a word joiner after the `@`, so they stay text there too.

The URL is a secret (a Slack webhook URL is its own credential), so it comes from the environment
only (KEEL_ALERT_WEBHOOK_URL) and never appears in a message, a log line or an error. Unset, alerts
are off: the sensors write them to their tick log instead.

A delivery never holds a sensor up: it has DEADLINE_SECONDS in all (a webhook that answers one byte
at a time is cut off), and an alert with a key is sent once (the instance records the keys sent). An
alert whose sensor cannot wait for the webhook (a run failure: Dagster moves that sensor's cursor on
whatever happens) is kept as undelivered in the instance and sent again by a later tick.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

WEBHOOK_VARIABLE = "KEEL_ALERT_WEBHOOK_URL"
UI_VARIABLE = "KEEL_UI_URL"  # where a person opens a run; `make ui` sets it


class WebhookError(RuntimeError):
    """The webhook did not take the alert; the message never contains the URL."""


def webhook_url(environ: Mapping[str, str] | None = None) -> str | None:
    return ((os.environ if environ is None else environ).get(WEBHOOK_VARIABLE) or "").strip() or None


def run_link(run_id: str, environ: Mapping[str, str] | None = None) -> str:
    base = (os.environ if environ is None else environ).get(UI_VARIABLE, "").rstrip("/")
    return f" {base}/runs/{run_id}" if base else ""


_MENTION = re.compile(r"@(?=(?:channel|here|all|everyone)\b)", re.IGNORECASE)


def plain_text(text: str) -> str:
    """`text` as a chat webhook shows it literally: Slack's escapes, and no broadcast mention."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u2060", escaped)


DEADLINE_SECONDS = 5.0  # the whole delivery, every attempt included: a sensor tick never waits longer
SENT_PREFIX = "keel/alert_sent/"  # the instance's key-value store records each alert key once sent
UNDELIVERED_KEY = "keel/alerts_undelivered"  # alerts whose delivery failed, to send again: {key: text}


class _Attempt:
    """One POST, run on its own thread so the caller can give up at a deadline and cut its socket."""

    def __init__(self, url: str, body: bytes, timeout: float):
        self.connection: http.client.HTTPConnection | None = None
        self.sent = False  # the whole request reached the webhook (its answer may still be missing)
        self.error: BaseException | None = None
        self.done = False
        attempt = self

        class Tracked:
            def connect(self):
                super().connect()
                attempt.connection = self

            def request(self, *args, **kwargs):
                super().request(*args, **kwargs)
                attempt.sent = True

        http_class = type("Connection", (Tracked, http.client.HTTPConnection), {})
        https_class = type("SecureConnection", (Tracked, http.client.HTTPSConnection), {})

        class Plain(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(http_class, req)

        class Secure(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(https_class, req, context=self._context)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None  # urllib would follow a 301/302 as a GET without the alert, answered 200: lost

        opener = urllib.request.build_opener(Plain, Secure, NoRedirect)  # proxies from the environment still apply
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")

        def run() -> None:
            try:
                with opener.open(request, timeout=timeout) as response:
                    response.read()
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                self.error = error
            self.done = True

        self.thread = threading.Thread(target=run, name="alert-webhook", daemon=True)
        self.thread.start()

    def wait(self, seconds: float) -> bool:
        """True once the POST finished within `seconds`; otherwise its socket is cut and False."""
        self.thread.join(max(seconds, 0.0))
        if self.done:
            return True
        with contextlib.suppress(OSError, AttributeError):  # unblocks a read that trickles
            self.connection.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(1.0)
        return False


def _check_url(url: str) -> None:
    """A WebhookError (never urllib's ValueError, whose message holds the URL) when `url` is no http(s) URL: a
    pasted URL without its scheme must not leak the secret into a log, and its alert is kept to send again."""
    try:
        parts = urllib.parse.urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed `[` of an IPv6 address
        valid = False
    if not valid:
        raise WebhookError(
            f"the alert webhook ({WEBHOOK_VARIABLE}) is not an http(s) URL (it must start with https://); "
            "the alert was not delivered"
        )


def post(url: str, text: str, attempts: int = 3, deadline: float = DEADLINE_SECONDS) -> str:
    """POST {"text": text} within `deadline` seconds in all (not per read: a webhook that trickles its
    answer is cut off); a refused or failed delivery is tried up to `attempts` times, then raises.

    Returns "delivered", or "unanswered" when the whole request reached the webhook but its answer did
    not come in time: it was most likely taken, so it is not sent again (each alert goes out once).
    """
    _check_url(url)
    body = json.dumps({"text": plain_text(text)}).encode()
    end = time.monotonic() + deadline
    problem = "could not be reached"
    for attempt in range(attempts):
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        trial = _Attempt(url, body, timeout=remaining)
        if not trial.wait(remaining):
            if trial.sent:
                return "unanswered"
            problem = f"did not take the alert within {deadline:g} s"
            break
        error = trial.error
        if error is None:
            return "delivered"
        if isinstance(error, urllib.error.HTTPError):
            problem = f"answered HTTP {error.code}"
            if 300 <= error.code < 400:
                problem += " (a redirect, not followed: set the URL it points to)"
            if error.code < 500 and error.code != 429:  # the request itself is wrong: retrying will not help
                break
        elif isinstance(error, (urllib.error.URLError, OSError, http.client.HTTPException)):
            if trial.sent and isinstance(error, TimeoutError | socket.timeout):
                return "unanswered"
            problem = f"could not be reached ({type(getattr(error, 'reason', error)).__name__})"
        else:
            problem = f"failed ({type(error).__name__})"
        time.sleep(min(2**attempt * 0.5, max(end - time.monotonic(), 0)))
    raise WebhookError(f"the alert webhook ({WEBHOOK_VARIABLE}) {problem}; the alert was not delivered")


def _sent_key(key: str) -> str:
    return SENT_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


def already_sent(instance, key: str) -> bool:
    return bool(instance.run_storage.get_cursor_values({_sent_key(key)}))


def _record_sent(instance, key: str) -> None:
    instance.run_storage.set_cursor_values({_sent_key(key): dt.datetime.now(dt.UTC).isoformat()})


def notify(text: str, log, environ: Mapping[str, str] | None = None, *, instance=None, key: str | None = None) -> bool:
    """Send `text` when the webhook is set (True), else only log it (False).

    With `instance` and `key`, the alert is sent once: a key already sent is not sent again (a tick
    that failed after the webhook took the alert, or a run seen twice, sends nothing new).
    """
    url = webhook_url(environ)
    if url is None:
        log.info(f"alert (not sent: {WEBHOOK_VARIABLE} is not set): {text}")
        return False
    if instance is not None and key is not None and already_sent(instance, key):
        log.info(f"alert already sent, not again: {text}")
        return True
    outcome = post(url, text)
    if instance is not None and key is not None:
        _record_sent(instance, key)
    if outcome == "unanswered":
        log.warning(f"alert sent, but the webhook did not answer within {DEADLINE_SECONDS:g} s: {text}")
    else:
        log.info(f"alert sent: {text}")
    return True


def _undelivered(instance) -> dict[str, str]:
    stored = instance.run_storage.get_cursor_values({UNDELIVERED_KEY}).get(UNDELIVERED_KEY)
    return json.loads(stored) if stored else {}


def keep_undelivered(instance, key: str, text: str) -> None:
    """Keep an alert whose delivery failed, for `resend_undelivered` to send later."""
    instance.run_storage.set_cursor_values({UNDELIVERED_KEY: json.dumps({**_undelivered(instance), key: text})})


def resend_undelivered(log, instance) -> int:
    """Send the alerts kept as undelivered, oldest first; how many went. Raises WebhookError (keeping the rest)
    when the webhook still fails."""
    pending = _undelivered(instance)
    sent = 0
    for key, text in list(pending.items()):
        notify(text, log, instance=instance, key=key)
        del pending[key]
        instance.run_storage.set_cursor_values({UNDELIVERED_KEY: json.dumps(pending)})
        sent += 1
    return sent
