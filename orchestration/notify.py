"""The alert notifier: a JSON POST to a webhook (Slack incoming-webhook compatible: {"text": ...}).

Every message is sent as plain text: `&`, `<` and `>` are escaped as Slack's rules ask, so a reason,
a user name or a column name cannot mention `<!channel>`, draw a link `<url|text>` or open a user's
profile (`<@U123>`); `@channel`, `@here`, `@all` and `@everyone` (the mentions Mattermost and Discord
webhooks read in plain text) get a word joiner after the `@`, so they stay text there too.

The URL is a secret (a Slack webhook URL is its own credential), so it comes from the environment
only (KEEL_ALERT_WEBHOOK_URL) and never appears in a message, a log line or an error. Unset, alerts
are off: the sensors write them to their tick log instead.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
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


def post(url: str, text: str, attempts: int = 3, timeout: float = 10.0) -> None:
    """POST {"text": text} as plain text; a refused or failed delivery is tried `attempts` times, then raises."""
    body = json.dumps({"text": plain_text(text)}).encode()
    problem = ""
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's webhook
                response.read()
                return
        except urllib.error.HTTPError as error:
            problem = f"answered HTTP {error.code}"
            if error.code < 500 and error.code != 429:  # the request itself is wrong: retrying will not help
                break
        except (urllib.error.URLError, OSError) as error:
            problem = f"could not be reached ({type(getattr(error, 'reason', error)).__name__})"
        time.sleep(min(2**attempt, 5))
    raise WebhookError(f"the alert webhook ({WEBHOOK_VARIABLE}) {problem}; the alert was not delivered")


def notify(text: str, log, environ: Mapping[str, str] | None = None) -> bool:
    """Send `text` when the webhook is set (True), else only log it (False)."""
    url = webhook_url(environ)
    if url is None:
        log.info(f"alert (not sent: {WEBHOOK_VARIABLE} is not set): {text}")
        return False
    post(url, text)
    log.info(f"alert sent: {text}")
    return True
