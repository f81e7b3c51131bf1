"""When to retrain: drift, decay and collapse episodes of the current champion, labels, cooldown, retries.

Plain data, no Dagster; the numbers are params.yaml `retraining:` (ml/params.py RetrainingSection).

A retrain is worth its cost only when it buys AUC, so every rule is judged against **what the
champion reached**: its AUC at the gate, on the evaluation days it did not train on (`reached`;
before it is known, the champion's first `decay_days` labelled days). Days differ far more than
their size says (weather, weekdays, the mix of rows), so the **noise of one labelled day** is the
spread of daily AUC between days: successive days of one version, pooled over the latest
`spread_days` labelled days of every version (robust: the median absolute difference, so one level
shift or a slow trend does not inflate it), never below the days' size-based standard errors.

- A **decay**: the champion's latest `decay_days` labelled days, pooled, fall below what it reached
  by more than `max_auc_drop` plus `noise_z` noises of that comparison.
- A **collapse**: each of the latest `collapse_days` labelled days falls below what it reached by
  more than `max_auc_drop` plus `collapse_z` noises. It asks at once, without waiting out the
  cooldown; if the new champion does not get back near the level before the collapse (its gate
  AUC), the collapse episode stays open and asks once more when `min_labelled_days` more labelled
  days exist to learn from. It never loops: a collapse retrain that did not change the champion is
  asked again only after the cooldown, and there is one such follow-up at most.
- A **drift** (the drift report's verdict) opens an episode that retrains only when it costs
  something: once `min_labelled_days` of its days have labels, and either those days, pooled, are
  below what the champion reached by more than `max_auc_drop` plus `drift_cost_z` noises (the drift
  is prior evidence, so its bar is lower than a decay's), or the label-free AUC estimate fell beyond
  noise on one of its days while its labelled days do not contradict it (they lean below what the
  champion reached by `max_auc_drop`, even within noise). A drift whose labels show no loss spends no retrain; its episode stays
  open (and retrains if a cost appears) until it closes.
- Episodes have memory: a drift episode closes only after `close_after_days` calm days in a row, a
  decay or collapse only when the latest `close_after_days` labelled days, pooled, are back within
  the band. A new champion starts afresh against its own reached AUC (a collapse not yet recovered
  carries over, as above).
- Drift and decay requests are never within `cooldown_days` of the previous request. A request
  that did not change the champion (failed, blocked by the gate, cancelled) is asked again after
  another cooldown, under a new run key.
- The state is rebuilt from history: the sensor re-reads every event after a cursor reset, and the
  last request (its day and the champion then) comes from the runs it launched, not only the cursor.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from ml.params import RetrainingSection

Kind = Literal["drift", "performance", "collapse", "age"]
# The median absolute successive difference of normal noise with sd s is 0.6745 * sqrt(2) * s.
MAD_OF_DIFFERENCES = 0.6745 * math.sqrt(2)


@dataclass(frozen=True)
class Event:
    """One materialization of drift_report (kind drift) or model_performance (kind performance)."""

    storage_id: int
    kind: Literal["drift", "performance"]
    day: str
    bad: bool  # drift: the day's verdict; performance: unused (decay is judged over days)
    model_version: int
    detail: str
    roc_auc: float | None = None  # performance: the day's AUC and its standard error
    auc_se: float | None = None
    reached_auc: float | None = None  # performance: the AUC the version reached at its gate
    estimated_drop: bool = False  # drift: the label-free AUC estimate fell beyond noise on the day


@dataclass(frozen=True)
class Episode:
    kind: Kind
    start: str
    trigger: str
    requested_on: str | None = None  # the day of the latest retrain request for it
    attempt: int = 0
    costly: bool = False  # drift: the label-free estimate fell on one of its days
    level: float | None = None  # collapse: the AUC reached before it, which a new champion must get back to
    learned_to: str | None = None  # the newest labelled day its latest request trained on
    requested_by: int | None = None  # the champion when it asked last


@dataclass(frozen=True)
class State:
    after: dict[str, int] = field(default_factory=dict)  # per kind, the last event (storage id) read
    latest_day: str | None = None
    champion: int | None = None
    reached: float | None = None  # the champion's AUC at its gate
    episode: Episode | None = None
    last_retrain_day: str | None = None
    performance: dict[str, list[float]] = field(default_factory=dict)  # the champion's days: [auc, se]
    verdicts: dict[str, bool] = field(default_factory=dict)  # the champion's days: drifted or not
    history: list[list] = field(default_factory=list)  # the latest labelled days: [day, version, auc, se]
    champion_since: str | None = None  # the first day the champion scored
    age_limit: int | None = None  # the age that asks for a retrain now (None: retraining.max_age_days)

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> State:
        try:
            data = json.loads(cursor) if cursor else {}
        except ValueError:
            data = {}  # a cursor edited by hand into something else: rebuild from history
        if (
            not isinstance(data, dict)
            or not _storage_ids(data.get("after", {}))
            or set(data) - set(cls.__dataclass_fields__)
        ):
            data = {}  # a cursor of an older policy, or edited by hand: rebuild from history
        episode = data.get("episode")
        try:
            return cls(**{**data, "episode": Episode(**episode) if episode else None})
        except TypeError:
            return cls()


def _storage_ids(after: object) -> bool:
    """Whether a cursor's `after` maps each kind to a storage id (a whole number, not below 0)."""
    return isinstance(after, dict) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in after.values()
    )


@dataclass(frozen=True)
class Decision:
    state: State
    # run key, recent_from, recent_to, trigger, requested_on, reference_from, episode (its kind)
    retrain: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)


def training_set_config(request: dict[str, str]) -> dict[str, str | bool]:
    """What a retrain request asks the training set for (assets/training_set.py TrainingSetConfig): its
    labelled days, the episode's start, the night it was asked on (the window is chosen as the new
    version will be used, from the night after), and whether a collapse asked (the relation changed:
    the days since the episode's start are a candidate, and the window is chosen without a gap)."""
    return {
        "recent_from": request["recent_from"],
        "recent_to": request["recent_to"],
        "reference_from": request["reference_from"],
        "requested_on": request["requested_on"],
        "relation_changed": request.get("episode") == "collapse",
    }


def _days_between(first: str, second: str) -> int:
    return (dt.date.fromisoformat(second) - dt.date.fromisoformat(first)).days


def day_noise(history: list[list], settings: RetrainingSection) -> float | None:
    """One labelled day's noise: the spread of daily AUC between successive days of one version
    (robust), never below the days' size-based standard errors; None until `spread_min_days` days of
    one version give `spread_min_days - 1` successive differences (a day's size alone under-states
    it, so nothing is judged on labels yet), unless that setting is 1 (the size alone)."""
    by_version: dict[int, list[float]] = {}
    for _, version, auc, _ in sorted(history):
        by_version.setdefault(version, []).append(auc)
    steps = [abs(b - a) for aucs in by_version.values() for a, b in zip(aucs, aucs[1:], strict=False)]
    if not history or len(steps) < settings.spread_min_days - 1:
        return None
    size = math.sqrt(statistics.fmean(se**2 for *_, se in history))
    return max(statistics.median(steps) / MAD_OF_DIFFERENCES, size) if steps else size


def _mean(days: list[list[float]]) -> float:
    return statistics.fmean(auc for auc, _ in days)


def _reference(state: State, settings: RetrainingSection) -> tuple[float, int, str] | None:
    """What the champion reached, how many days' worth that is, and its name; None while unknown."""
    if state.reached is not None:
        return state.reached, 1, f"{state.reached:.3f} at its gate"  # the gate's evaluation days: about a day
    k = settings.decay_days
    days = [state.performance[d] for d in sorted(state.performance)]
    if len(days) < 2 * k:
        return None
    return _mean(days[:k]), k, f"{_mean(days[:k]):.3f} on its first {k} labelled days"


def decay(state: State, settings: RetrainingSection) -> str | None:
    """Why the champion's labelled AUC has decayed beyond noise from what it reached, or None."""
    k, reference = settings.decay_days, _reference(state, settings)
    days = [state.performance[d] for d in sorted(state.performance)]
    if reference is None or len(days) < k:
        return None
    base, base_days, named = reference
    noise = day_noise(state.history, settings)
    if noise is None:
        return None
    now = _mean(days[-k:])
    band = settings.max_auc_drop + settings.noise_z * noise * math.sqrt(1 / base_days + 1 / k)
    if now >= base - band:
        return None
    return (
        f"decay: labelled ROC AUC {now:.3f} on its latest {k} days vs {named} (band {band:.3f}, day noise {noise:.3f})"
    )


def collapse(state: State, settings: RetrainingSection, days_needed: int | None = None) -> str | None:
    """Why each of the champion's latest `collapse_days` (or `days_needed`) labelled days is far below
    what it reached, or None."""
    j, reference = days_needed or settings.collapse_days, _reference(state, settings)
    days = [state.performance[d] for d in sorted(state.performance)]
    if reference is None or len(days) < j:
        return None
    base, base_days, named = reference
    noise = day_noise(state.history, settings)
    if noise is None:
        return None
    bound = settings.max_auc_drop + settings.collapse_z * noise * math.sqrt(1 / base_days + 1)
    latest = [auc for auc, _ in days[-j:]]
    if max(latest) >= base - bound:
        return None
    figures = ", ".join(f"{auc:.3f}" for auc in latest)
    return (
        f"collapse: labelled ROC AUC {figures} on its latest {j} days vs {named} "
        f"(collapse bound {bound:.3f}, day noise {noise:.3f})"
    )


def drift_cost(state: State, since: str, settings: RetrainingSection) -> str | None:
    """What a drift since `since` costs the champion on its labelled days, in words, or None."""
    days = [state.performance[d] for d in sorted(state.performance) if d >= since][-settings.decay_days :]
    reference = _reference(state, settings)
    if not days or reference is None:
        return None
    base, base_days, named = reference
    noise = day_noise(state.history, settings)
    if noise is None:
        return None
    now = _mean(days)
    band = settings.max_auc_drop + settings.drift_cost_z * noise * math.sqrt(1 / base_days + 1 / len(days))
    if now >= base - band:
        return None
    return f"labelled ROC AUC {now:.3f} on its {len(days)} labelled drifted days vs {named} (band {band:.3f})"


def labels_lean_to_a_loss(state: State, since: str, settings: RetrainingSection) -> bool:
    """Whether the champion's labelled days since `since`, pooled, are below what it reached by
    `max_auc_drop` (even within noise), or nothing says otherwise yet: a label-free estimate that fell
    counts as a cost only while the labels do not contradict it."""
    days = [state.performance[d] for d in sorted(state.performance) if d >= since]
    reference = _reference(state, settings)
    if not days or reference is None:
        return True
    return _mean(days) < reference[0] - settings.max_auc_drop


def recovered(state: State, since: str, settings: RetrainingSection) -> bool:
    """Whether the champion's latest `close_after_days` labelled days after `since`, pooled, are back
    within the band of what it reached: the evidence a decay or collapse episode needs to close."""
    k, reference = settings.close_after_days, _reference(state, settings)
    after = [state.performance[d] for d in sorted(state.performance) if d > since]
    if len(after) < k or reference is None:
        return False
    base, base_days, _ = reference
    noise = day_noise(state.history, settings)
    if noise is None:
        return False
    band = settings.max_auc_drop + settings.noise_z * noise * math.sqrt(1 / base_days + 1 / k)
    return _mean(after[-k:]) >= base - band


def calm(verdicts: dict[str, bool], since: str, settings: RetrainingSection) -> bool:
    """Whether the latest `close_after_days` drift verdicts after `since` all said no drift."""
    after = [verdicts[d] for d in sorted(verdicts) if d > since]
    k = settings.close_after_days
    return len(after) >= k and not any(after[-k:])


def _new_champion(
    state: State, champion: int | None, reached: float | None, settings: RetrainingSection
) -> tuple[State, list[str]]:
    """A fresh start for a new champion; a collapse it did not recover from stays open."""
    notes, episode, carried = [], state.episode, None
    if state.champion is not None and champion is not None:
        notes.append(
            f"v{champion} is champion: a fresh start against its own reference"
            + (f" (reached ROC AUC {reached:.3f} at its gate)" if reached is not None else "")
        )
    # A collapse asks for one follow-up at most: a level the new relation cannot reach must not loop.
    follow_up = episode is not None and episode.kind == "collapse" and episode.attempt < 2
    if follow_up and episode.level is not None and champion is not None:
        noise = day_noise(state.history, settings) or 0.0
        band = settings.max_auc_drop + settings.noise_z * noise * math.sqrt(2)
        if reached is None or reached < episode.level - band:
            got = "an unknown AUC" if reached is None else f"ROC AUC {reached:.3f}"
            carried = replace(
                episode,
                trigger=f"collapse not recovered: v{champion} reached {got} at its gate, below the "
                f"{episode.level:.3f} before the collapse by more than the band {band:.3f}",
            )
            notes.append(f"collapse episode from {episode.start} stays open: {carried.trigger}")
    limit = state.age_limit
    if episode is not None and episode.kind == "age" and episode.learned_to and champion is not None:
        before = state.performance.get(episode.learned_to)  # the old champion on the newest day it held out
        gain = reached - before[0] if reached is not None and before else None
        bought = gain is not None and gain >= settings.max_auc_drop
        limit = settings.max_age_days if bought else 2 * (limit or settings.max_age_days)
        figure = "an unknown gain" if gain is None else f"{gain:+.3f} ROC AUC"
        notes.append(
            f"the age retrain of {episode.start} bought {figure} at its gate: the next age check at {limit} days"
        )
    state = replace(
        state,
        champion=champion,
        reached=reached,
        episode=carried,
        performance={},
        verdicts={},
        champion_since=state.latest_day,
        age_limit=limit,
    )
    return state, notes


def _aged(state: State, settings: RetrainingSection) -> tuple[State, str]:
    """An age episode when the champion has scored `age_limit` days and its latest labelled days lean
    to a loss (below what it reached by `max_auc_drop`, even within noise): the older a model, the less
    evidence a retrain needs. What that retrain buys at its gate sets the next age (doubled if nothing)."""
    limit = state.age_limit or settings.max_age_days
    if not settings.max_age_days or state.champion_since is None or state.latest_day is None:
        return state, "no open drift, decay or collapse episode"
    age = _days_between(state.champion_since, state.latest_day)
    if age < limit:
        return state, f"no open drift, decay or collapse episode (v{state.champion} age {age} of {limit} days)"
    days = [state.performance[d] for d in sorted(state.performance)][-settings.decay_days :]
    reference = _reference(state, settings)
    if reference is None or not days:
        return state, f"v{state.champion} is {age} days old; no labelled days to weigh yet"
    now, (base, _, named) = _mean(days), reference
    if now >= base - settings.max_auc_drop:
        return state, (
            f"v{state.champion} is {age} days old but its latest {len(days)} labelled days ({now:.3f}) are not "
            f"{settings.max_auc_drop} below {named}: no retrain"
        )
    trigger = (
        f"age: v{state.champion} has scored {age} days (limit {limit}) and its latest {len(days)} labelled days "
        f"({now:.3f}) lean below {named}"
    )
    first = sorted(state.performance)[-len(days)]  # the days that lean to a loss: the episode's start
    return replace(state, episode=Episode("age", first, trigger)), trigger


def observe(
    state: State,
    events: list[Event],
    champion: int | None,
    settings: RetrainingSection,
    reached: float | None = None,
) -> tuple[State, list[str]]:
    """Fold new events into the state: a new champion (and the AUC it `reached` at its gate, when
    known), drifted days, labelled days, and their decay or collapse."""
    notes = []
    if champion != state.champion:
        state, notes = _new_champion(state, champion, reached, settings)
    elif reached is not None and state.reached is None:
        state = replace(state, reached=reached)
    for event in sorted(events, key=lambda e: e.storage_id):
        latest = max(filter(None, [state.latest_day, event.day]))
        after = {**state.after, event.kind: max(state.after.get(event.kind, 0), event.storage_id)}
        state = replace(state, after=after, latest_day=latest)
        if event.kind == "performance":
            state, more = _labelled(state, event, champion, settings)
            notes += more
            continue
        if champion is None or event.model_version != champion:
            continue
        episode = state.episode
        state = replace(state, verdicts={**state.verdicts, event.day: bool(event.bad)})
        if state.champion_since is None or event.day < state.champion_since:
            state = replace(state, champion_since=event.day)
        if event.bad and episode is None:
            state = replace(state, episode=Episode("drift", event.day, event.detail, costly=event.estimated_drop))
            notes.append(f"drift episode opened by {event.day}: {event.detail}")
        elif event.bad and episode is not None and episode.kind == "drift" and event.estimated_drop:
            state = replace(state, episode=replace(episode, costly=True))
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


def _labelled(state: State, event: Event, champion: int | None, settings: RetrainingSection) -> tuple[State, list[str]]:
    """A labelled day: into the spread's history (any version), and into the champion's decay and collapse."""
    if event.roc_auc is None or event.auc_se is None or not math.isfinite(event.roc_auc):
        return state, []
    day = [event.day, event.model_version, event.roc_auc, event.auc_se]
    history = sorted([*(h for h in state.history if h[0] != event.day), day])
    state = replace(state, history=history[-settings.spread_days :])
    if champion is None or event.model_version != champion:
        return state, []
    if state.reached is None and event.reached_auc is not None and math.isfinite(event.reached_auc):
        state = replace(state, reached=event.reached_auc)
    state = replace(state, performance={**state.performance, event.day: [event.roc_auc, event.auc_se]})
    episode, notes = state.episode, []
    fell = collapse(state, settings)
    if fell and (episode is None or episode.kind != "collapse"):
        level = _reference(state, settings)
        first = sorted(state.performance)[-settings.collapse_days]  # the first collapsed day: the episode's start
        state = replace(
            state, episode=Episode("collapse", first, f"{event.detail}: {fell}", level=level[0] if level else None)
        )
        notes.append(f"collapse episode opened by {first}: {fell}" + (f" (was: {episode.kind})" if episode else ""))
        return state, notes
    why = decay(state, settings)
    if why and episode is None:
        state = replace(state, episode=Episode("performance", event.day, f"{event.detail}: {why}"))
        notes.append(f"performance episode opened by {event.day}: {why}")
    elif (
        episode is not None
        and episode.kind in ("performance", "collapse")
        and not why
        and not fell
        and recovered(state, episode.start, settings)
    ):
        state = replace(state, episode=None)
        notes.append(
            f"{episode.kind} episode from {episode.start} closed: its latest {settings.close_after_days} "
            f"labelled days, pooled, are back within the band as of {event.day}"
        )
    return state, notes


def decide(
    state: State,
    labelled_days: list[str],
    settings: RetrainingSection,
    last_request: str | None = None,
    last_request_champion: int | None = None,
) -> Decision:
    """Whether the open episode asks for a retrain now, and on which labelled days.

    `last_request` is the day of the latest retrain request the sensor made (read from its runs) and
    `last_request_champion` the champion then, so the cooldown holds across cursor resets.
    """
    last = max(filter(None, [state.last_retrain_day, last_request]), default=None)
    state = replace(state, last_retrain_day=last)
    episode = state.episode
    if episode is None:
        state, note = _aged(state, settings)
        episode = state.episode
        if episode is None:
            return Decision(state, notes=[note])
    kept = episode.kind == "age" and episode.requested_by == state.champion and last and state.latest_day
    if kept and _days_between(last, state.latest_day) >= settings.cooldown_days:  # the gate kept the champion
        limit = 2 * (state.age_limit or settings.max_age_days)
        note = (
            f"the age retrain of {episode.start} did not change the champion (it bought nothing): "
            f"the next age check at {limit} days"
        )
        return Decision(replace(state, episode=None, age_limit=limit), notes=[note])
    since = sorted(d for d in labelled_days if d >= episode.start)
    trigger = episode.trigger
    if episode.kind == "drift":
        if len(since) < settings.min_labelled_days:
            return Decision(
                state,
                notes=[
                    f"drift since {episode.start}: waiting for labels ({len(since)} of "
                    f"{settings.min_labelled_days} days labelled)"
                ],
            )
        cost = drift_cost(state, episode.start, settings)
        estimated = episode.costly and labels_lean_to_a_loss(state, episode.start, settings)
        if cost is None and not estimated and day_noise(state.history, settings) is None:
            return Decision(
                state,
                notes=[
                    f"drift since {episode.start}: waiting for labelled days to measure the noise between days "
                    f"({settings.spread_min_days} days of one version, retraining.spread_min_days)"
                ],
            )
        if cost is None and not estimated:
            free = (
                f"drift since {episode.start} costs nothing yet: its labelled days are within the band of "
                f"what v{state.champion} reached, and the estimated AUC held or those days do not lean to a loss; "
                "no retrain"
            )
            aged, note = _aged(replace(state, episode=None), settings)  # a costless drift does not hide age
            if aged.episode is None:
                return Decision(state, notes=[f"{free}; {note}"])
            state, episode = aged, aged.episode
            trigger = episode.trigger
        else:
            why = cost or "the label-free AUC estimate fell beyond noise on a drifted day"
            trigger = f"{episode.trigger}; it costs: {why}"
    if episode.kind != "collapse" and collapse(state, settings, days_needed=1):
        # A collapse may be starting: a retrain now would learn nothing of it (its only day is held out).
        return Decision(
            state,
            notes=[
                f"{collapse(state, settings, days_needed=1)}: holding the {episode.kind} retrain until "
                f"{settings.collapse_days} such days confirm a collapse and give it a day to learn from"
            ],
        )
    requested_by = episode.requested_by if episode.requested_on else last_request_champion
    urgent = episode.kind == "collapse" and not (last and requested_by == state.champion)
    if urgent and episode.learned_to:  # a new champion that did not recover: learn from newer days
        new = [d for d in labelled_days if d > episode.learned_to]
        if len(new) < settings.min_labelled_days:
            return Decision(
                state,
                notes=[
                    f"collapse since {episode.start}: waiting for labelled days to learn from ({len(new)} of "
                    f"{settings.min_labelled_days} since the last retrain's {episode.learned_to})"
                ],
            )
    if last and state.latest_day and not urgent:
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
        "trigger": trigger,
        "requested_on": today,
        "reference_from": episode.start,  # the new version's drift reference: the days that asked for it
        "episode": episode.kind,
    }
    state = replace(
        state,
        episode=replace(
            episode, requested_on=today, attempt=attempt, learned_to=window[-1], requested_by=state.champion
        ),
        last_retrain_day=today,
    )
    again = f" (attempt {attempt}: the champion did not change since the last request)" if attempt > 1 else ""
    if episode.kind == "collapse" and attempt > 1 and requested_by != state.champion:
        again = f" (attempt {attempt}: the last retrain did not get back to the level before the collapse)"
    skipped = " without waiting out the cooldown" if urgent and last else ""
    return Decision(
        state,
        retrain=request,
        notes=[f"retrain on {window[0]}..{window[-1]}{skipped}{again}: {trigger}"],
    )
