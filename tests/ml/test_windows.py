"""What a retrain learns from: the newest whole days to judge on, each window's days and weights, the winner."""

import numpy as np
import pytest

from ml.windows import choose, day_weights, evaluation_days, window_days


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
    from assets.training_set import candidate_windows
    from ml.params import TrainingWindow

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
    from assets.training_set import candidate_windows
    from ml.params import TrainingWindow

    configured = [
        TrainingWindow(name="long", days=90),
        TrainingWindow(name="weighted", days=90, half_life_days=14),
        TrainingWindow(name="episode", days=90, since_episode=True),
    ]
    before = list(days(*[1] * 20))
    assert [w.name for w in candidate_windows(configured, before)] == ["long", "weighted"]
    chosen = candidate_windows(configured, before, episode_start="2026-10-15")
    assert [(w.name, w.days[0], w.since, w.half_life_days) for w in chosen] == [
        ("long", "2026-10-01", None, None),
        ("weighted", "2026-10-01", None, 14),
        ("episode", "2026-10-15", "2026-10-15", None),
    ]
    assert "half-life 14 days" in chosen[1].describe() and "episode's start 2026-10-15" in chosen[2].describe()
    # An episode older than every day: the same days as `long`, trained once.
    assert [w.name for w in candidate_windows(configured, before, episode_start="2026-09-01")] == ["long", "weighted"]
    # No day since the start: no candidate of it.
    assert [w.name for w in candidate_windows(configured, before, episode_start="2026-11-30")] == ["long", "weighted"]


def test_a_weighted_window_cannot_weigh_the_raw_rows():
    from ml.params import TrainingWindow

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
