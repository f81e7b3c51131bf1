"""What a retrain learns from: the newest whole days to judge on, each window's days and weights, the winner."""

import numpy as np
import pandas as pd
import pytest

from ml.params import TrainingWindow
from ml.spec import DatasetSpec
from ml.windows import (
    candidate_windows,
    choice_gap,
    choose,
    choose_window,
    day_weights,
    evaluation_days,
    lagged_windows,
    raw_days,
    row_dates,
    window_days,
)


def days(*sizes: int) -> dict[str, int]:
    return {f"2026-10-{n:02d}": size for n, size in enumerate(sizes, start=1)}


def test_the_evaluation_takes_the_newest_whole_days_until_it_has_enough_rows():
    assert evaluation_days(days(900, 900, 900, 900), 1000) == ["2026-10-03", "2026-10-04"]
    assert evaluation_days(days(900, 900, 2000), 1000) == ["2026-10-03"]  # one big day is enough


def test_the_evaluation_leaves_a_day_to_train_on():
    assert evaluation_days(days(100, 100, 100), 1000) == ["2026-10-02", "2026-10-03"]
    assert evaluation_days(days(5000), 1000) == []


def test_a_window_takes_the_latest_days_before_the_evaluation():
    before = list(days(*[1] * 10))
    assert window_days(before, 3) == before[-3:] and window_days(before, 30) == before


def test_after_an_episode_start_the_evaluation_does_not_reach_back_before_it():
    # The change came on day 4: days 4-5 hold 1,000 rows, half of min_rows, so day 3 (the old relation)
    # is left out although the newest days alone do not reach min_rows.
    sizes = days(600, 600, 600, 500, 500)
    assert evaluation_days(sizes, 2000) == ["2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05"]
    assert evaluation_days(sizes, 2000, since="2026-10-04") == ["2026-10-04", "2026-10-05"]
    # Too few rows since the start: the evaluation reaches back to min_rows as before.
    assert evaluation_days(sizes, 2000, since="2026-10-05") == evaluation_days(sizes, 2000)
    # Enough rows since the start: the newest days until min_rows, all of them after it.
    assert evaluation_days(days(600, 600, 600, 900, 900), 1000, since="2026-10-02") == ["2026-10-04", "2026-10-05"]


def test_a_window_since_the_episode_takes_only_its_days():
    before = list(days(*[1] * 10))
    assert window_days(before, 28, since="2026-10-07") == before[6:]
    assert window_days(before, 2, since="2026-10-07") == before[-2:]


def test_recency_weights_halve_every_half_life():
    weights = day_weights(["2026-10-01", "2026-10-15", "2026-10-29"], 14)
    assert weights == pytest.approx({"2026-10-01": 0.25, "2026-10-15": 0.5, "2026-10-29": 1.0})
    assert day_weights(["2026-10-01", "2026-10-02"], None) == {"2026-10-01": 1.0, "2026-10-02": 1.0}


def test_the_default_window_wins_unless_another_is_better_beyond_the_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    signal = labels + rng.normal(0, 1.0, 300)
    # A little better by the point AUC, on 300 rows: noise; the default (first listed) stays.
    default = signal + np.random.default_rng(1).normal(0, 0.7, 300)
    name, reason, aucs = choose(labels, {"long": default, "recent": signal})
    assert aucs["recent"] > aucs["long"] + 0.01 and name == "long"
    assert "default" in reason and "recent" in reason
    # Much better: evidence; of the windows better beyond the noise, the best AUC wins.
    sharp = labels + rng.normal(0, 0.3, 300)
    name, reason, aucs = choose(labels, {"long": signal, "recent": sharp, "other": (sharp + signal) / 2})
    assert name == "recent" and "beyond the noise" in reason and f"{aucs['recent']:.4f}" in reason
    assert choose(labels, {"only": signal})[0] == "only"
    with pytest.raises(ValueError):
        choose(labels, {})


def test_windows_with_the_same_days_train_once_and_the_raw_window_stays():
    configured = [
        TrainingWindow(name="recent", days=28),
        TrainingWindow(name="long", days=90),
        TrainingWindow(name="raw_and_long", days=90, raw=True),
    ]
    few = list(days(*[1] * 10))
    assert [(w.name, len(w.days), w.raw) for w in candidate_windows(configured, few)] == [
        ("recent", 10, False),
        ("raw_and_long", 10, True),
    ]
    many = list(days(*[1] * 31)) + [f"2026-11-{n:02d}" for n in range(1, 31)]
    chosen = candidate_windows(configured, many)
    assert [(w.name, len(w.days)) for w in chosen] == [("recent", 28), ("long", 61), ("raw_and_long", 61)]
    assert chosen[0].days == many[-28:]


def test_a_since_episode_window_needs_an_episode_and_a_weighted_window_keeps_its_half_life():
    configured = [
        TrainingWindow(name="long", days=90),
        TrainingWindow(name="weighted", days=90, half_life_days=14),
        TrainingWindow(name="episode", days=90, since_episode=True),
    ]
    before = list(days(*[1] * 20))
    assert [w.name for w in candidate_windows(configured, before)] == ["long", "weighted"]
    chosen = candidate_windows(configured, before, episode_start="2026-10-15", relation_changed=True)
    assert [(w.name, w.days[0], w.since, w.half_life_days) for w in chosen] == [
        ("long", "2026-10-01", None, None),
        ("weighted", "2026-10-01", None, 14),
        ("episode", "2026-10-15", "2026-10-15", None),
    ]
    assert "half-life 14 days" in chosen[1].describe() and "episode's start 2026-10-15" in chosen[2].describe()
    # An episode older than every day: the same days as `long`, trained once.
    assert [w.name for w in candidate_windows(configured, before, "2026-09-01", relation_changed=True)] == [
        "long",
        "weighted",
    ]
    # No day since the start: no candidate of it.
    assert [w.name for w in candidate_windows(configured, before, "2026-11-30", relation_changed=True)] == [
        "long",
        "weighted",
    ]


def test_the_days_since_the_episode_are_a_candidate_only_when_a_collapse_changed_the_relation():
    # A drift or a decay does not make the older labelled days wrong: no since_episode window.
    configured = [TrainingWindow(name="long", days=90), TrainingWindow(name="episode", days=90, since_episode=True)]
    before = list(days(*[1] * 20))
    assert [w.name for w in candidate_windows(configured, before, "2026-10-15")] == ["long"]
    assert [w.name for w in candidate_windows(configured, before, "2026-10-15", relation_changed=True)] == [
        "long",
        "episode",
    ]


RAW = [f"2026-09-{n:02d}" for n in range(1, 31)]  # 30 days of raw data before the labelled days


def test_the_raw_datas_days_are_days_of_the_windows_and_a_raw_window_leaves_them_out():
    configured = [
        TrainingWindow(name="weighted", days=90, half_life_days=14),
        TrainingWindow(name="recent", days=28),
        TrainingWindow(name="raw_and_long", days=90, raw=True),
    ]
    before = list(days(*[1] * 5))  # an early retrain: 5 labelled days to train on
    weighted, recent, raw_and_long = candidate_windows(configured, before, raw_days=RAW)
    # The 28-day window reaches back 23 days into the raw data rather than learning from 5 days.
    assert recent.days == RAW[-23:] + before and recent.raw_days == 23 and not recent.raw
    assert weighted.days == RAW + before and weighted.half_life_days == 14
    assert "35 days 2026-09-01..2026-10-05 (30 of them the raw data's)" in weighted.describe()
    # Every raw row already: its days are the labelled ones.
    assert raw_and_long.days == before and raw_and_long.raw and raw_and_long.raw_days == 0
    # Without raw days, as before: the labelled days alone.
    assert candidate_windows(configured, before)[1].days == before


def test_the_raw_days_are_the_raw_rows_dates_before_the_first_labelled_day():
    spec = DatasetSpec.model_validate(
        {
            "name": "d",
            "source": {"uri": "x.parquet", "format": "parquet"},
            "target": {"column": "y", "positive": "yes", "negative": "no"},
            "id": {"column": "id"},
            "timestamp": {"column": "at"},
            "columns": {"numeric": ["x"], "categorical": [], "boolean": []},
        }
    )
    rows = pd.DataFrame({"at": ["2026-09-29 23:10", "2026-09-30 06:00", "2026-10-02 01:00", None], "x": [1, 2, 3, 4]})
    dates = row_dates(rows, spec)
    assert dates.tolist() == ["2026-09-29", "2026-09-30", "2026-10-02", None]
    assert row_dates(rows, spec.model_copy(update={"timestamp": None})) is None  # undated: no raw days
    labelled = ["2026-10-01", "2026-10-02", "2026-10-03"]
    # A raw row dated on or after the first labelled day is a raw row only (no day of the windows).
    assert raw_days(dates, labelled, labelled) == ["2026-09-29", "2026-09-30"]
    # A retrain that did not load the first labelled days: the raw days would not be next to its days.
    assert raw_days(dates, labelled, labelled[1:]) == []


def test_the_window_is_chosen_by_models_trained_without_the_days_up_to_the_night_the_model_first_scores():
    # Labels three days late: asked on night 10-20, the newest labelled day is 10-17, and the new
    # version first scores 10-21, four days after it.
    assert choice_gap("2026-10-17", "2026-10-20", relation_changed=False) == 4
    assert choice_gap("2026-10-17", "2026-10-18", relation_changed=False) == 2  # a day late
    # After a collapse the newest days alone show the new relation; by hand, no night is known.
    assert choice_gap("2026-10-17", "2026-10-20", relation_changed=True) == 0
    assert choice_gap("2026-10-17", None, relation_changed=False) == 0
    configured = [
        TrainingWindow(name="weighted", days=90, half_life_days=14),
        TrainingWindow(name="recent", days=3),
        TrainingWindow(name="episode", days=90, since_episode=True),
    ]
    before = list(days(*[1] * 10))
    windows = candidate_windows(configured, before, "2026-10-05", RAW[-2:], relation_changed=False)
    lagged = lagged_windows(configured, windows, before, 4, "2026-10-05", RAW[-2:])
    assert [(w.name, w.days) for w in lagged] == [("weighted", RAW[-2:] + before[:6]), ("recent", before[3:6])]
    assert lagged_windows(configured, windows, before, 0) == []
    assert lagged_windows(configured, windows, before[:4], 4) == []  # no labelled day would be left
    # The lagged models choose; the window's model on its full days is the candidate, with its AUC.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    good, poor = labels + rng.normal(0, 0.5, 400), labels + rng.normal(0, 3.0, 400)
    full = {"weighted": good, "recent": good + rng.normal(0, 0.01, 400)}
    name, reason, aucs = choose_window(labels, full, {"weighted": poor, "recent": good}, 4)
    assert choose(labels, full)[0] == "weighted"  # the full days' models keep the default ...
    assert name == "recent" and "without their newest 4 days" in reason  # ... the lagged ones do not
    assert aucs == choose(labels, full)[2]
    assert choose_window(labels, full, None, 0)[:2] == choose(labels, full)[:2]


def test_a_weighted_window_cannot_weigh_the_raw_rows():
    with pytest.raises(ValueError, match="raw rows have no day"):
        TrainingWindow(name="w", days=90, raw=True, half_life_days=14)


def test_after_a_change_the_recency_weighted_window_wins_beyond_the_noise():
    # 60 days of a stream whose relation changes on day 45: before, the target follows x1; after, x2.
    # The unweighted window learns mostly the old relation; weighing rows by recency learns the new one.
    from ml.models import fit_model

    rng = np.random.default_rng(0)
    names = [f"2026-{9 + n // 30:02d}-{n % 30 + 1:02d}" for n in range(60)]
    frames = {}
    for n, day in enumerate(names):
        x = rng.normal(size=(300, 2))
        signal = x[:, 0] if n < 45 else x[:, 1]
        frames[day] = (x, (signal + rng.normal(0, 0.5, 300) > 0).astype(int))
    evaluation = evaluation_days(dict.fromkeys(names, 300), 600)
    training = [d for d in names if d not in evaluation]
    features = np.vstack([frames[d][0] for d in training])
    labels = np.concatenate([frames[d][1] for d in training])
    scores = {}
    for name, half_life in (("long", None), ("weighted", 7.0)):
        weight_of = day_weights(training, half_life)
        weights = np.concatenate([np.full(300, weight_of[d]) for d in training])
        model = fit_model("lightgbm", features, labels, {"n_estimators": 50}, 0, sample_weight=weights)
        scores[name] = model.predict(np.vstack([frames[d][0] for d in evaluation]))
    truth = np.concatenate([frames[d][1] for d in evaluation])
    name, reason, aucs = choose(truth, scores)
    assert name == "weighted" and aucs["weighted"] > aucs["long"] + 0.05, reason
