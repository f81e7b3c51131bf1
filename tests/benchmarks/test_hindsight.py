"""The hindsight limit's dynamic programme against brute force over every schedule."""

import itertools

import numpy as np
import pytest

from benchmarks.hindsight import best_schedule, schedule_aucs


def random_ahead(rng, nights, starts):
    return {s: list(rng.uniform(0.4, 0.9, nights - s)) for s in starts}


def brute_force(ahead, nights, retrains):
    later = sorted(s for s in ahead if s > 0)
    best = (np.mean(schedule_aucs(ahead, nights, [])), [])
    for k in range(1, retrains + 1):
        for chosen in itertools.combinations(later, k):
            mean = np.mean(schedule_aucs(ahead, nights, list(chosen)))
            if mean > best[0] + 1e-12:
                best = (mean, list(chosen))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_programme_finds_the_best_schedule_brute_force_finds(seed):
    rng = np.random.default_rng(seed)
    nights = int(rng.integers(5, 11))
    starts = [0, *sorted(rng.choice(np.arange(1, nights), size=int(rng.integers(1, nights - 1)), replace=False))]
    ahead = random_ahead(rng, nights, starts)
    for retrains in range(4):
        mean, chosen = best_schedule(ahead, nights, retrains)
        expected, _ = brute_force(ahead, nights, retrains)
        assert mean == pytest.approx(expected, abs=1e-12), (seed, retrains)
        assert len(chosen) <= retrains
        assert mean == pytest.approx(float(np.mean(schedule_aucs(ahead, nights, chosen))), abs=1e-12)


def test_a_hand_case_switches_where_the_better_model_starts():
    ahead = {
        0: [0.8, 0.8, 0.5, 0.5, 0.5],
        2: [0.7, 0.7, 0.7],  # better than the first from night 2 on
        3: [0.9, 0.6],  # better on night 3 alone: worth a switch only as a second one
    }
    assert best_schedule(ahead, 5, 0) == (pytest.approx(0.62), [])
    assert best_schedule(ahead, 5, 1) == (pytest.approx((0.8 + 0.8 + 0.7 + 0.7 + 0.7) / 5), [2])
    assert best_schedule(ahead, 5, 2) == (pytest.approx((0.8 + 0.8 + 0.7 + 0.9 + 0.6) / 5), [2, 3])
    assert schedule_aucs(ahead, 5, [3]) == [0.8, 0.8, 0.5, 0.9, 0.6]


def test_bad_input_is_refused_with_what_is_wrong():
    ahead = {0: [0.7, 0.7, 0.7], 1: [0.8, 0.8]}
    with pytest.raises(ValueError, match="night 0"):
        best_schedule({1: [0.8, 0.8]}, 3, 1)
    with pytest.raises(ValueError, match="retrains must be >= 0"):
        best_schedule(ahead, 3, -1)
    with pytest.raises(ValueError, match="scored on 1 nights, not 2"):
        best_schedule({0: [0.7, 0.7, 0.7], 1: [0.8]}, 3, 1)
    with pytest.raises(ValueError, match=r"night\(s\) \[2\]"):
        schedule_aucs(ahead, 3, [2])
