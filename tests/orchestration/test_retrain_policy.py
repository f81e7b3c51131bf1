"""The retraining policy on its own: episodes per champion, labels, decay and collapse against what the
champion reached, a drift's cost, cooldown, retries."""

from ml.params import RetrainingSection as Settings
from orchestration.retrain_policy import Event, State, day_noise, decide, observe, training_set_config

SETTINGS = Settings(min_labelled_days=2, window_days=7, cooldown_days=7)


def day(n: int) -> str:
    return f"2026-10-{n:02d}"


def drift(storage_id: int, n: int, bad: bool, version: int = 1, estimated_drop: bool = True) -> Event:
    """A day's verdict; by default its label-free AUC estimate fell too (a drift that costs)."""
    return Event(
        storage_id, "drift", day(n), bad, version, f"drift_report {day(n)}", estimated_drop=estimated_drop and bad
    )


def perf(
    storage_id: int, n: int, auc: float, se: float = 0.01, version: int = 1, reached: float | None = None
) -> Event:
    return Event(storage_id, "performance", day(n), False, version, f"model_performance {day(n)}", auc, se, reached)


def labelled(last: int, first: int = 1) -> list[str]:
    return [day(n) for n in range(first, last + 1)]


def test_a_drift_day_opens_an_episode_that_waits_for_labels_then_retrains_once():
    state, notes = observe(State(), [drift(1, 1, False), drift(2, 2, True)], 1, SETTINGS)
    assert state.episode.start == day(2) and notes == [f"drift episode opened by {day(2)}: drift_report {day(2)}"]
    waiting = decide(state, labelled(2), SETTINGS)
    assert waiting.retrain is None and "1 of 2 days labelled" in waiting.notes[0]

    state, _ = observe(waiting.state, [drift(3, 3, True)], 1, SETTINGS)
    asked = decide(state, labelled(3), SETTINGS)
    assert asked.retrain == {
        "run_key": f"retrain-drift-{day(2)}",
        "recent_from": day(1),  # the latest window_days labelled days, not only the drifted ones
        "recent_to": day(3),
        "trigger": f"drift_report {day(2)}; it costs: the label-free AUC estimate fell beyond noise on a drifted day",
        "requested_on": day(3),
        "reference_from": day(2),  # the new version's drift reference: the days since the drift began
        "episode": "drift",
    }
    # Still drifting the next day, same champion: the cooldown holds the episode's next request.
    state, _ = observe(asked.state, [drift(4, 4, True)], 1, SETTINGS)
    held = decide(state, labelled(4), SETTINGS)
    assert held.retrain is None and "cooldown: 1 of 7 days" in held.notes[0] and "retry" in held.notes[0]


def test_a_retrain_that_did_not_change_the_champion_is_asked_again_after_the_cooldown():
    """Failed, blocked by the gate or cancelled: the champion is the same, so the episode asks again."""
    state, _ = observe(State(), [drift(1, 2, True), drift(2, 3, True)], 1, SETTINGS)
    first = decide(state, labelled(3), SETTINGS)
    state, _ = observe(first.state, [drift(3, 10, True)], 1, SETTINGS)
    again = decide(state, labelled(10), SETTINGS)
    assert again.retrain["run_key"] == f"retrain-drift-{day(2)}-attempt-2"  # a new run key: not deduped
    assert "attempt 2" in again.notes[0]


def test_a_new_champion_starts_afresh_and_persistent_drift_triggers_again_after_the_cooldown():
    state, _ = observe(State(), [drift(1, 2, True), drift(2, 3, True)], 1, SETTINGS)
    first = decide(state, labelled(3), SETTINGS)
    state, notes = observe(first.state, [drift(3, 4, True, version=2)], 2, SETTINGS)
    assert notes[0] == "v2 is champion: a fresh start against its own reference"
    assert state.episode.start == day(4)  # the new champion's own first drifted day
    held = decide(state, labelled(6), SETTINGS)
    assert held.retrain is None and "cooldown: 1 of 7" in held.notes[0]
    state, _ = observe(held.state, [drift(4, 10, True, version=2)], 2, SETTINGS)
    later = decide(state, labelled(10), SETTINGS)
    assert later.retrain["run_key"] == f"retrain-drift-{day(4)}"


def test_days_scored_by_an_older_model_say_nothing_about_the_champion():
    state, _ = observe(State(), [drift(1, 5, True, version=1)], 2, SETTINGS)
    assert state.episode is None and state.after == {"drift": 1}


def test_one_good_day_does_not_close_a_drift_episode_but_enough_good_days_do():
    settings = Settings(min_labelled_days=2, window_days=7, cooldown_days=7, close_after_days=3)
    state, _ = observe(State(), [drift(1, 2, True), drift(2, 3, False)], 1, settings)
    assert state.episode is not None and state.episode.start == day(2)
    state, notes = observe(state, [drift(3, 4, False), drift(4, 5, False)], 1, settings)
    assert state.episode is None and "no drift on the latest 3 days" in notes[0]


def test_a_flickering_persistent_shift_still_retrains():
    settings = Settings(min_labelled_days=3, window_days=7, cooldown_days=7, close_after_days=3)
    flicker = [drift(n, n, n % 2 == 0) for n in range(2, 9)]  # drift every other night
    state, notes = observe(State(), flicker, 1, settings)
    assert state.episode.start == day(2) and not any("closed" in note for note in notes)
    asked = decide(state, labelled(8), settings)
    assert asked.retrain["run_key"] == f"retrain-drift-{day(2)}"


def test_one_good_day_does_not_close_a_decay_episode():
    settings = Settings(min_labelled_days=2, decay_days=2, collapse_z=50, max_auc_drop=0.02, close_after_days=3)
    history = [perf(n, n, 0.80, reached=0.80) for n in range(1, 7)] + [perf(7, 7, 0.70), perf(8, 8, 0.70)]
    state, _ = observe(State(), history, 1, settings)
    assert state.episode.kind == "performance"
    state, _ = observe(state, [perf(9, 9, 0.90)], 1, settings)  # one good day: the pool of the latest 2 is 0.80
    assert state.episode is not None
    state, notes = observe(state, [perf(10, 10, 0.80), perf(11, 11, 0.80)], 1, settings)
    assert state.episode is None and "back within the band" in notes[0]


def test_the_cooldown_survives_a_cursor_reset_through_the_last_request():
    state, _ = observe(State(), [drift(1, 2, True), drift(2, 5, True)], 1, SETTINGS)
    held = decide(state, labelled(5), SETTINGS, last_request=day(1))
    assert held.retrain is None and held.notes == [
        f"cooldown: 4 of 7 days since the retrain of {day(1)} (next: retrain)"
    ]


def test_a_decay_beyond_noise_opens_a_performance_episode_and_retrains():
    settings = Settings(min_labelled_days=2, decay_days=2, max_auc_drop=0.02, noise_z=2.0, cooldown_days=7)
    good = [perf(n, n, 0.80 + (0.005 if n % 2 else -0.005), reached=0.80) for n in range(1, 7)]
    noisy = [perf(7, 7, 0.78, se=0.03), perf(8, 8, 0.77, se=0.03)]  # within the noise of small days
    state, _ = observe(State(), good + noisy, 1, settings)
    assert state.episode is None
    fallen = [perf(9, 9, 0.70), perf(10, 10, 0.70)]  # clearly below: 0.10 against a band of ~0.06
    state, notes = observe(state, fallen, 1, settings)
    assert (
        state.episode.kind == "performance"
        and "decay: labelled ROC AUC 0.735 on its latest 2 days vs 0.800 at its gate" in notes[0]
    )
    asked = decide(state, labelled(10), settings)
    assert asked.retrain["run_key"] == f"retrain-performance-{day(9)}"


def test_nothing_is_judged_on_labels_before_the_spread_between_days_is_known():
    """Three labelled days cannot say how much days differ: a fall on them waits for more days."""
    settings = Settings(min_labelled_days=3, decay_days=3, collapse_z=5)
    state, _ = observe(State(), [perf(n, n, 0.60, se=0.01, reached=0.80) for n in range(1, 4)], 1, settings)
    assert state.episode is None and day_noise(state.history, settings) is None
    state, _ = observe(state, [drift(10 + n, n, True, estimated_drop=False) for n in range(1, 4)], 1, settings)
    held = decide(state, labelled(3), settings)
    assert held.retrain is None and "waiting for labelled days to measure the noise between days" in held.notes[0]


def test_decay_is_measured_against_what_the_version_reached_at_its_gate():
    """A version that reached 0.82 at its gate and scores 0.72 from its first labelled day on has lost
    0.10: the old rule compared its latest days with its own first ones and saw nothing."""
    settings = Settings(decay_days=3, collapse_z=50, max_auc_drop=0.02, noise_z=2.0)
    days = [perf(n, n, 0.72 + (0.01 if n % 2 else -0.01), reached=0.82) for n in range(1, 7)]
    state, notes = observe(State(), days, 1, settings)
    assert state.reached == 0.82 and state.episode.kind == "performance"
    assert "vs 0.820 at its gate" in notes[0]
    # The same days from a version that reached 0.73 are no decay.
    calm_state, _ = observe(State(), [perf(n, n, 0.72, reached=0.73) for n in range(1, 7)], 1, settings)
    assert calm_state.episode is None


def test_a_fallen_estimate_asks_for_a_retrain_only_while_the_labels_do_not_contradict_it():
    """The label-free estimate fell on a drifted day. Before the spread between days is known it asks
    for a retrain while its labelled days lean to a loss (below what the champion reached by
    max_auc_drop, even within noise); labelled days at or above that level outweigh it."""
    settings = Settings(min_labelled_days=2, cooldown_days=0)  # max_auc_drop 0.02
    opened, _ = observe(State(), [drift(1, 1, True), drift(2, 2, True)], 1, settings, reached=0.70)

    contradicted, _ = observe(opened, [perf(3, 1, 0.73), perf(4, 2, 0.69)], 1, settings)  # 0.710 pooled
    held = decide(contradicted, labelled(2), settings)
    assert held.retrain is None and "waiting for labelled days to measure the noise" in held.notes[0]

    leaning, _ = observe(opened, [perf(3, 1, 0.68), perf(4, 2, 0.67)], 1, settings)  # 0.675 pooled
    asked = decide(leaning, labelled(2), settings)
    assert asked.retrain["run_key"] == f"retrain-drift-{day(1)}"
    assert "the label-free AUC estimate fell beyond noise" in asked.retrain["trigger"]


def test_spread_min_days_1_judges_a_first_drifted_day_on_its_size_alone():
    """A user who will not wait for the spread between days: one labelled drifted day whose AUC fell
    beyond its size-based noise retrains; one within it does not."""
    settings = Settings(min_labelled_days=1, cooldown_days=0, spread_min_days=1)
    opened, _ = observe(State(), [drift(1, 1, True, estimated_drop=False)], 1, settings, reached=0.84)
    fallen, _ = observe(opened, [perf(2, 1, 0.76, se=0.015)], 1, settings)
    assert day_noise(fallen.history, settings) == 0.015
    asked = decide(fallen, labelled(1), settings)
    assert (
        asked.retrain["run_key"] == f"retrain-drift-{day(1)}"
        and "it costs: labelled ROC AUC 0.760" in (asked.retrain["trigger"])
    )
    held, _ = observe(opened, [perf(2, 1, 0.83, se=0.015)], 1, settings)
    assert decide(held, labelled(1), settings).retrain is None
    # The default waits for the spread between days.
    default = Settings(min_labelled_days=1, cooldown_days=0)
    waiting, _ = observe(
        observe(State(), [drift(1, 1, True, estimated_drop=False)], 1, default, reached=0.84)[0],
        [perf(2, 1, 0.76, se=0.015)],
        1,
        default,
    )
    assert day_noise(waiting.history, default) is None and decide(waiting, labelled(1), default).retrain is None


def test_the_spread_between_days_counts_as_noise_not_only_the_days_sizes():
    """Large days (standard error 0.005 from their size) that swing by ±0.06 from one day to the next:
    a pooled fall of 0.05 is within that noise, not a decay, though the sizes alone would call it one."""
    settings = Settings(decay_days=4, collapse_z=50, max_auc_drop=0.02, noise_z=2.0)
    swings = [0.70, 0.62, 0.72, 0.60, 0.70, 0.62, 0.72, 0.60]
    history = [perf(n, n, auc, se=0.005, version=1) for n, auc in enumerate(swings, start=1)]
    state, _ = observe(State(), history, 2, settings, reached=0.69)  # v1's days give the spread
    assert day_noise(state.history, settings) > 0.05
    fallen = [perf(10 + n, 10 + n, auc - 0.05, se=0.005, version=2) for n, auc in enumerate(swings[:4])]
    state, _ = observe(state, fallen, 2, settings)
    assert state.episode is None
    # Days as steady as their size says (±0.002): the same fall is a decay.
    steady = [perf(n, n, 0.66 + (0.002 if n % 2 else -0.002), se=0.005, version=1) for n in range(1, 9)]
    state, _ = observe(State(), steady, 2, settings, reached=0.69)
    state, _ = observe(state, fallen, 2, settings)
    assert state.episode is not None and state.episode.kind == "performance"


def test_a_collapse_inside_the_cooldown_retrains_at_once_and_does_not_loop():
    settings = Settings(min_labelled_days=3, decay_days=7, cooldown_days=7, collapse_days=2, collapse_z=5.0)
    normal = [perf(n, n, 0.78 + (0.01 if n % 2 else -0.01), reached=0.78) for n in range(1, 11)]
    state, _ = observe(State(), normal, 1, settings)
    assert state.episode is None
    # A retrain was asked two days ago (for v1, which stayed champion); then the labels collapse.
    state, notes = observe(state, [perf(11, 11, 0.20, reached=0.78), perf(12, 12, 0.22, reached=0.78)], 1, settings)
    assert state.episode.kind == "collapse" and "collapse: labelled ROC AUC 0.200, 0.220" in notes[-1]
    asked = decide(state, labelled(12), settings, last_request=day(10), last_request_champion=2)
    assert asked.retrain["run_key"] == f"retrain-collapse-{day(11)}"
    assert "without waiting out the cooldown" in asked.notes[0]
    # The retrain did not change the champion (blocked): the next night does not ask again.
    state, _ = observe(asked.state, [perf(13, 13, 0.21, reached=0.78)], 1, settings)
    held = decide(state, labelled(13), settings)
    assert held.retrain is None and "cooldown: 1 of 7" in held.notes[0]


def test_a_collapse_the_new_champion_did_not_recover_from_asks_again_with_more_days_to_learn_from():
    settings = Settings(min_labelled_days=3, decay_days=7, cooldown_days=7, collapse_days=2, collapse_z=5.0)
    normal = [perf(n, n, 0.78 + (0.01 if n % 2 else -0.01), reached=0.78) for n in range(1, 11)]
    state, _ = observe(State(), [*normal, perf(11, 11, 0.20), perf(12, 12, 0.22)], 1, settings)
    asked = decide(state, labelled(12), settings)
    assert asked.retrain is not None
    # v2 learned from one collapsed day only: it reached 0.62 at its gate, far below the 0.78 before.
    state, notes = observe(asked.state, [], 2, settings, reached=0.62)
    assert state.episode.kind == "collapse" and "collapse not recovered: v2 reached ROC AUC 0.620" in notes[1]
    waiting = decide(state, labelled(14), settings)
    assert waiting.retrain is None and "2 of 3 since the last retrain" in waiting.notes[0]
    again = decide(waiting.state, labelled(15), settings)
    assert again.retrain["run_key"] == f"retrain-collapse-{day(11)}-attempt-2"
    assert "did not get back to the level before the collapse" in again.notes[0]
    # v3 got back: a fresh start.
    state, _ = observe(again.state, [], 3, settings, reached=0.79)
    assert state.episode is None
    # Had v3 not got back either, there is no third collapse retrain: the level may be out of reach now.
    state, _ = observe(again.state, [], 3, settings, reached=0.63)
    assert state.episode is None


def test_a_drift_whose_labels_show_no_cost_spends_no_retrain_and_one_that_costs_retrains():
    settings = Settings(min_labelled_days=3, decay_days=7, cooldown_days=7, drift_cost_z=1.0, collapse_z=50)
    normal = [perf(n, n, 0.80 + (0.01 if n % 2 else -0.01), reached=0.80) for n in range(1, 9)]
    state, _ = observe(State(), normal, 1, settings)
    drifted = [drift(100 + n, n, True, estimated_drop=False) for n in range(9, 12)]
    fine = [perf(200 + n, n, 0.80, reached=0.80) for n in range(9, 12)]
    state, _ = observe(state, drifted + fine, 1, settings)
    free = decide(state, labelled(11), settings)
    assert free.retrain is None and "costs nothing" in free.notes[0]
    assert free.state.episode.kind == "drift"  # it stays open, with its memory
    costly = [drift(300 + n, n, True, estimated_drop=False) for n in range(12, 15)]
    fallen = [perf(400 + n, n, 0.70, reached=0.80) for n in range(12, 15)]
    state, _ = observe(free.state, costly + fallen, 1, settings)
    asked = decide(state, labelled(14), settings)
    assert asked.retrain["run_key"] == f"retrain-drift-{day(9)}" and "it costs: labelled ROC AUC" in asked.notes[0]


def test_the_cursor_round_trips_and_an_older_cursor_is_rebuilt_from_history():
    state, _ = observe(State(), [drift(1, 1, True), perf(2, 1, 0.8)], 1, SETTINGS)
    decision = decide(state, labelled(11), Settings(min_labelled_days=1, window_days=3))
    assert (decision.retrain["recent_from"], decision.retrain["recent_to"]) == (day(9), day(11))
    assert State.from_cursor(decision.state.to_cursor()) == decision.state
    assert State.from_cursor('{"after": 12, "latest_day": null, "episode": null, "last_retrain_day": null}') == State()


def test_an_old_champion_whose_labels_lean_to_a_loss_retrains_and_what_that_bought_sets_the_next_age():
    settings = Settings(decay_days=7, max_age_days=20, max_auc_drop=0.02, noise_z=2.0, cooldown_days=7, collapse_z=50)
    # Days that swing by ±0.06: a pooled fall of 0.04 is within noise, so no decay is ever proven.
    swing = [0.06 if n % 2 else -0.06 for n in range(40)]
    scored = [drift(n, n, False) for n in range(1, 26)]
    young = [perf(100 + n, n, 0.70 + swing[n], reached=0.70) for n in range(1, 15)]
    state, _ = observe(State(), scored + young, 1, settings)
    leaning = [perf(200 + n, n, 0.66 + swing[n], reached=0.70) for n in range(15, 23)]
    state, _ = observe(state, leaning, 1, settings)
    assert state.episode is None  # no decay beyond noise
    asked = decide(state, labelled(22), settings)
    assert asked.retrain["run_key"] == f"retrain-age-{day(16)}" and "age: v1 has scored 24 days" in asked.notes[0]
    # v2 reached 0.59 on the held-out days, where v1 had 0.60 (day 22): it bought nothing; the next age doubles.
    state, notes = observe(asked.state, [], 2, settings, reached=0.59)
    assert state.age_limit == 40 and "bought -0.010 ROC AUC" in notes[-1]
    # Had it bought 0.05, the age would stay.
    kept, _ = observe(asked.state, [], 2, settings, reached=0.65)
    assert kept.age_limit == 20
    # The same age, labels at what the champion reached: no retrain.
    steady = [perf(300 + n, n, 0.70 + swing[n], reached=0.70) for n in range(15, 23)]
    calm_state, _ = observe(State(), scored + young + steady, 1, settings)
    held = decide(calm_state, labelled(22), settings)
    assert held.retrain is None and "no retrain" in held.notes[0]


def test_one_day_far_below_holds_a_drift_retrain_until_a_second_confirms_the_collapse():
    """A retrain on the first collapsed day would hold that day out and learn nothing of the change."""
    settings = Settings(min_labelled_days=3, decay_days=7, cooldown_days=7, collapse_days=2, collapse_z=5.0)
    normal = [perf(n, n, 0.78 + (0.01 if n % 2 else -0.01), reached=0.78) for n in range(1, 11)]
    drifted = [drift(100 + n, n, True) for n in range(8, 13)]  # its label-free estimate fell: it costs
    state, _ = observe(State(), [*normal, *drifted, perf(11, 11, 0.20, reached=0.78)], 1, settings)
    held = decide(state, labelled(11), settings)
    assert held.retrain is None and "retrain until 2 such days confirm a collapse" in held.notes[0]
    state, _ = observe(held.state, [perf(12, 12, 0.22, reached=0.78)], 1, settings)
    asked = decide(state, labelled(12), settings)
    assert asked.retrain["run_key"] == f"retrain-collapse-{day(11)}" and asked.retrain["reference_from"] == day(11)
    # A collapse changed the relation: its training set takes the since_episode window and chooses without a gap.
    assert training_set_config(asked.retrain) == {
        "recent_from": day(1),
        "recent_to": day(12),
        "reference_from": day(11),
        "requested_on": day(12),
        "relation_changed": True,
    }
