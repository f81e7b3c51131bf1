"""The retraining policy on its own: episodes, waiting for labels, one retrain per episode, cooldown."""

from ml.params import RetrainingSection as Settings
from orchestration.retrain_policy import Event, State, decide, observe

SETTINGS = Settings(min_labelled_days=2, window_days=7, cooldown_days=7)


def day(n: int) -> str:
    return f"2026-10-{n:02d}"


def drift(storage_id: int, n: int, bad: bool, version: int = 1) -> Event:
    return Event(storage_id, "drift", day(n), bad, version, f"drift_report {day(n)}")


def test_a_drift_day_opens_an_episode_that_waits_for_labels_then_retrains_once():
    state, notes = observe(State(), [drift(1, 1, False), drift(2, 2, True)], champion=1)
    assert state.episode.start == day(2) and notes == [f"drift episode opened by {day(2)}: drift_report {day(2)}"]
    waiting = decide(state, labelled_days=[day(1), day(2)], settings=SETTINGS)
    assert waiting.retrain is None and "1 of 2 days labelled" in waiting.notes[0]

    state, _ = observe(waiting.state, [drift(3, 3, True)], champion=1)
    asked = decide(state, labelled_days=[day(1), day(2), day(3)], settings=SETTINGS)
    assert asked.retrain == {
        "run_key": f"retrain-drift-{day(2)}",
        "recent_from": day(2),
        "recent_to": day(3),
        "trigger": f"drift_report {day(2)}",
    }
    # Still drifting the next day: the same episode, no second request.
    state, _ = observe(asked.state, [drift(4, 4, True)], champion=1)
    again = decide(state, labelled_days=[day(n) for n in range(1, 5)], settings=SETTINGS)
    assert again.retrain is None and "already asked" in again.notes[0]


def test_days_scored_by_an_older_model_say_nothing_about_the_champion():
    state, _ = observe(State(), [drift(1, 5, True, version=1)], champion=2)
    assert state.episode is None and state.after == 1


def test_a_good_day_closes_the_episode_and_the_cooldown_holds_the_next_one():
    state, _ = observe(State(), [drift(1, 2, True), drift(2, 3, True)], champion=1)
    first = decide(state, [day(2), day(3)], SETTINGS)
    assert first.retrain is not None and first.state.last_retrain_day == day(3)
    state, notes = observe(first.state, [drift(3, 4, False, version=2)], champion=2)
    assert state.episode is None and "closed" in notes[0]
    state, _ = observe(state, [drift(4, 6, True, version=2), drift(5, 7, True, version=2)], champion=2)
    held = decide(state, [day(n) for n in range(2, 8)], SETTINGS)
    assert held.retrain is None and held.notes == [f"cooldown: 4 of 7 days since the retrain of {day(3)}"]
    state, _ = observe(held.state, [drift(6, 10, True, version=2)], champion=2)
    later = decide(state, [day(n) for n in range(2, 11)], SETTINGS)
    assert later.retrain["run_key"] == f"retrain-drift-{day(6)}" and later.retrain["recent_from"] == day(6)


def test_the_window_keeps_the_latest_labelled_days_and_the_cursor_round_trips():
    state, _ = observe(State(), [drift(1, 1, True)], champion=1)
    decision = decide(state, [day(n) for n in range(1, 12)], Settings(min_labelled_days=2, window_days=3))
    assert (decision.retrain["recent_from"], decision.retrain["recent_to"]) == (day(9), day(11))
    assert State.from_cursor(decision.state.to_cursor()) == decision.state
    assert State.from_cursor(None) == State()
