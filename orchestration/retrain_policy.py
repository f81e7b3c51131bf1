"""When to retrain: drift episodes, waiting for labels, and the cooldown. Plain data, no Dagster.

The numbers are params.yaml `retraining:` (ml/params.py RetrainingSection).

An episode starts with the first bad day (a drift verdict, or a day whose AUC fell too far) scored
by the current champion, and ends with the next good day of the same kind. Each episode asks for
at most one retrain, once `min_labelled_days` of its days have labels (a retrain before the labels
of the shifted days arrive could not learn the shift), and never within `cooldown_days` days of the
previous retrain. Days scored by an older model are ignored: they say nothing about the champion.
"""

from __future__ import annotations

import datetime as dt
import json
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
    bad: bool
    model_version: int
    detail: str


@dataclass(frozen=True)
class Episode:
    kind: Kind
    start: str
    trigger: str
    retrained: bool = False


@dataclass(frozen=True)
class State:
    after: int = 0  # the last event (storage id) taken into account
    latest_day: str | None = None
    episode: Episode | None = None
    last_retrain_day: str | None = None

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> State:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        episode = data.get("episode")
        return cls(**{**data, "episode": Episode(**episode) if episode else None})


@dataclass(frozen=True)
class Decision:
    state: State
    retrain: dict[str, str] | None = None  # run key, recent_from, recent_to, trigger
    notes: list[str] = field(default_factory=list)


def _days_between(first: str, second: str) -> int:
    return (dt.date.fromisoformat(second) - dt.date.fromisoformat(first)).days


def observe(state: State, events: list[Event], champion: int | None) -> tuple[State, list[str]]:
    """Fold new events into the state (episodes open on bad days, close on good ones)."""
    notes = []
    for event in sorted(events, key=lambda e: e.storage_id):
        latest = max(filter(None, [state.latest_day, event.day]))
        state = replace(state, after=max(state.after, event.storage_id), latest_day=latest)
        if champion is None or event.model_version != champion:
            continue
        episode = state.episode
        if event.bad and episode is None:
            state = replace(state, episode=Episode(event.kind, event.day, event.detail))
            notes.append(f"{event.kind} episode opened by {event.day}: {event.detail}")
        elif not event.bad and episode is not None and episode.kind == event.kind and event.day > episode.start:
            state = replace(state, episode=None)
            notes.append(f"{episode.kind} episode from {episode.start} closed by a good day, {event.day}")
    return state, notes


def decide(state: State, labelled_days: list[str], settings: RetrainingSection) -> Decision:
    """Whether the open episode asks for a retrain now, and on which labelled days."""
    episode = state.episode
    if episode is None:
        return Decision(state, notes=["no open drift or performance episode"])
    if episode.retrained:
        return Decision(state, notes=[f"the {episode.kind} episode from {episode.start} already asked for its retrain"])
    since = sorted(d for d in labelled_days if d >= episode.start)
    if len(since) < settings.min_labelled_days:
        return Decision(
            state,
            notes=[
                f"{episode.kind} since {episode.start}: waiting for labels ({len(since)} of "
                f"{settings.min_labelled_days} days labelled)"
            ],
        )
    if state.last_retrain_day and state.latest_day:
        waited = _days_between(state.last_retrain_day, state.latest_day)
        if waited < settings.cooldown_days:
            return Decision(
                state,
                notes=[
                    f"cooldown: {waited} of {settings.cooldown_days} days since the retrain of {state.last_retrain_day}"
                ],
            )
    window = since[-settings.window_days :]
    request = {
        "run_key": f"retrain-{episode.kind}-{episode.start}",
        "recent_from": window[0],
        "recent_to": window[-1],
        "trigger": episode.trigger,
    }
    state = replace(state, episode=replace(episode, retrained=True), last_retrain_day=state.latest_day)
    return Decision(state, retrain=request, notes=[f"retrain on {window[0]}..{window[-1]}: {episode.trigger}"])
