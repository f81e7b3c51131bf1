"""When to retrain: drift and decay episodes of the current champion, labels, cooldown, retries.

Plain data, no Dagster; the numbers are params.yaml `retraining:` (ml/params.py RetrainingSection).

- An **episode** belongs to one champion. It opens on the champion's first drifted day, or when its
  labelled AUC has **decayed**: the latest `min_labelled_days` labelled days, pooled, fall below its
  first `min_labelled_days` labelled days (what the model reached when it was new) by more than
  `max_auc_drop` plus the noise of those days' sizes (`noise_z` standard errors). It closes only on
  enough good evidence: the latest `close_after_days` days since it opened all without drift (a drift
  episode), or pooled back within the band (a decay). So a shift that is flagged every other night
  still retrains, and one good day does not close an episode. A new champion starts afresh: its days
  are judged against its own reference.
- An open episode asks for a retrain once `min_labelled_days` of its days have labels (a drift
  episode; a decay is measured on labelled days already), and never within `cooldown_days` of the
  previous request. If the champion is still the same after another cooldown (the retrain failed,
  was blocked by the gate or was cancelled), the episode asks again, under a new run key.
- The state is rebuilt from history: the sensor re-reads every event after a cursor reset, and the
  last request comes from the runs it launched (`last_request`), not only from the cursor.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from ml.params import RetrainingSection

Kind = Literal["drift", "performance"]


@dataclass(frozen=True)
class Event:
    """One materialization of drift_report (kind drift) or model_performance (kind performance)."""

    storage_id: int
    kind: Kind
    day: str
    bad: bool  # drift: the day's verdict; performance: unused (decay is judged over days)
    model_version: int
    detail: str
    roc_auc: float | None = None  # performance: the day's AUC and its standard error
    auc_se: float | None = None


@dataclass(frozen=True)
class Episode:
    kind: Kind
    start: str
    trigger: str
    requested_on: str | None = None  # the day of the latest retrain request for it
    attempt: int = 0


@dataclass(frozen=True)
class State:
    after: dict[str, int] = field(default_factory=dict)  # per kind, the last event (storage id) read
    latest_day: str | None = None
    champion: int | None = None
    episode: Episode | None = None
    last_retrain_day: str | None = None
    performance: dict[str, list[float]] = field(default_factory=dict)  # the champion's days: [auc, se]
    verdicts: dict[str, bool] = field(default_factory=dict)  # the champion's days: drifted or not

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> State:
        data = json.loads(cursor) if cursor else {}
        if not isinstance(data.get("after", {}), dict):
            data = {}  # a cursor of an older policy: rebuild from history
        episode = data.get("episode")
        return cls(**{**data, "episode": Episode(**episode) if episode else None})


@dataclass(frozen=True)
class Decision:
    state: State
    retrain: dict[str, str] | None = None  # run key, recent_from, recent_to, trigger, requested_on, reference_from
    notes: list[str] = field(default_factory=list)


def _days_between(first: str, second: str) -> int:
    return (dt.date.fromisoformat(second) - dt.date.fromisoformat(first)).days


def _pooled(days: list[list[float]]) -> tuple[float, float]:
    """Mean AUC of some days and its standard error (days weigh by their precision)."""
    weights = [1 / max(se, 1e-6) ** 2 for _, se in days]
    total = sum(weights)
    return sum(w * auc for w, (auc, _) in zip(weights, days, strict=True)) / total, math.sqrt(1 / total)


def decay(performance: dict[str, list[float]], settings: RetrainingSection) -> str | None:
    """Why the champion's labelled AUC has decayed beyond noise, or None."""
    k = settings.min_labelled_days
    days = [performance[d] for d in sorted(performance)]
    if len(days) < 2 * k:
        return None
    (base, base_se), (now, now_se) = _pooled(days[:k]), _pooled(days[-k:])
    band = settings.max_auc_drop + settings.noise_z * math.hypot(base_se, now_se)
    if now >= base - band:
        return None
    return f"labelled ROC AUC {now:.3f} on its latest {k} days vs {base:.3f} on its first {k} (band {band:.3f})"


def recovered(performance: dict[str, list[float]], since: str, settings: RetrainingSection) -> bool:
    """Whether the champion's latest `close_after_days` labelled days after `since`, pooled, are back
    within the band of its first days: the evidence a decay episode needs to close."""
    k, first = settings.close_after_days, settings.min_labelled_days
    days = [performance[d] for d in sorted(performance)]
    after = [performance[d] for d in sorted(performance) if d > since]
    if len(after) < k or len(days) < first:
        return False
    (base, base_se), (now, now_se) = _pooled(days[:first]), _pooled(after[-k:])
    return now >= base - settings.max_auc_drop - settings.noise_z * math.hypot(base_se, now_se)


def calm(verdicts: dict[str, bool], since: str, settings: RetrainingSection) -> bool:
    """Whether the latest `close_after_days` drift verdicts after `since` all said no drift."""
    after = [verdicts[d] for d in sorted(verdicts) if d > since]
    k = settings.close_after_days
    return len(after) >= k and not any(after[-k:])


def observe(
    state: State, events: list[Event], champion: int | None, settings: RetrainingSection
) -> tuple[State, list[str]]:
    """Fold new events into the state: a new champion, drifted days, labelled days and their decay."""
    notes = []
    if champion != state.champion:
        if state.champion is not None and champion is not None:
            notes.append(f"v{champion} is champion: a fresh start against its own reference")
        state = replace(state, champion=champion, episode=None, performance={}, verdicts={})
    for event in sorted(events, key=lambda e: e.storage_id):
        latest = max(filter(None, [state.latest_day, event.day]))
        after = {**state.after, event.kind: max(state.after.get(event.kind, 0), event.storage_id)}
        state = replace(state, after=after, latest_day=latest)
        if champion is None or event.model_version != champion:
            continue
        episode = state.episode
        if event.kind == "performance":
            if event.roc_auc is None or event.auc_se is None or not math.isfinite(event.roc_auc):
                continue
            state = replace(state, performance={**state.performance, event.day: [event.roc_auc, event.auc_se]})
            why = decay(state.performance, settings)
            if why and episode is None:
                state = replace(state, episode=Episode("performance", event.day, f"{event.detail}: {why}"))
                notes.append(f"performance episode opened by {event.day}: {why}")
            elif (
                episode is not None
                and episode.kind == "performance"
                and not why
                and recovered(state.performance, episode.start, settings)
            ):
                state = replace(state, episode=None)
                notes.append(
                    f"performance episode from {episode.start} closed: its latest {settings.close_after_days} "
                    f"labelled days, pooled, are back within the band as of {event.day}"
                )
            continue
        state = replace(state, verdicts={**state.verdicts, event.day: bool(event.bad)})
        if event.bad and episode is None:
            state = replace(state, episode=Episode("drift", event.day, event.detail))
            notes.append(f"drift episode opened by {event.day}: {event.detail}")
        elif (
            not event.bad
            and episode is not None
            and episode.kind == "drift"
            and calm(state.verdicts, episode.start, settings)
        ):
            state = replace(state, episode=None)
            notes.append(
                f"drift episode from {episode.start} closed: no drift on the latest {settings.close_after_days} days, "
                f"as of {event.day}"
            )
    return state, notes


def decide(
    state: State, labelled_days: list[str], settings: RetrainingSection, last_request: str | None = None
) -> Decision:
    """Whether the open episode asks for a retrain now, and on which labelled days.

    `last_request` is the day of the latest retrain request the sensor made (read from its runs), so
    the cooldown holds across cursor resets.
    """
    last = max(filter(None, [state.last_retrain_day, last_request]), default=None)
    state = replace(state, last_retrain_day=last)
    episode = state.episode
    if episode is None:
        return Decision(state, notes=["no open drift or performance episode"])
    since = sorted(d for d in labelled_days if d >= episode.start)
    if episode.kind == "drift" and len(since) < settings.min_labelled_days:
        return Decision(
            state,
            notes=[
                f"drift since {episode.start}: waiting for labels ({len(since)} of "
                f"{settings.min_labelled_days} days labelled)"
            ],
        )
    if last and state.latest_day:
        waited = _days_between(last, state.latest_day)
        if waited < settings.cooldown_days:
            what = "retry of the retrain" if episode.requested_on else "retrain"
            return Decision(
                state,
                notes=[
                    f"cooldown: {waited} of {settings.cooldown_days} days since the retrain of {last} (next: {what})"
                ],
            )
    window = sorted(labelled_days)[-settings.window_days :]
    if not window:
        return Decision(state, notes=[f"{episode.kind} since {episode.start}: no labelled day to train on yet"])
    attempt = episode.attempt + 1
    today = state.latest_day or window[-1]
    request = {
        "run_key": f"retrain-{episode.kind}-{episode.start}" + (f"-attempt-{attempt}" if attempt > 1 else ""),
        "recent_from": window[0],
        "recent_to": window[-1],
        "trigger": episode.trigger,
        "requested_on": today,
        "reference_from": episode.start,  # the new version's drift reference: the days that asked for it
    }
    state = replace(state, episode=replace(episode, requested_on=today, attempt=attempt), last_retrain_day=today)
    again = f" (attempt {attempt}: the champion did not change since the last request)" if attempt > 1 else ""
    return Decision(state, retrain=request, notes=[f"retrain on {window[0]}..{window[-1]}{again}: {episode.trigger}"])
