"""What a retrain learns from: the newest whole days to judge on, each window's days, the winner."""

import pytest

from ml.windows import choose, evaluation_days, window_days


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


def test_the_best_evaluation_auc_wins_and_the_reason_names_the_others():
    name, reason = choose({"recent": 0.71, "long": 0.74, "raw_and_long": 0.73})
    assert name == "long" and "0.7400" in reason and "recent 0.7100" in reason and "raw_and_long 0.7300" in reason
    assert choose({"recent": 0.7, "long": 0.7})[0] == "recent"  # a tie: the first listed
    with pytest.raises(ValueError):
        choose({})


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
