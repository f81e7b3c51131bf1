"""The retraining benchmark's short replay: real flight days through the project's jobs and sensors,
and the calendar baselines on the same days. The rules come from params.yaml `retraining:`, not from
a fixed count of retrains, so a change of the drift policy keeps this test meaningful."""

import datetime as dt
import itertools
import math
import re

import pytest

NIGHTS, LABEL_DELAY = 15, 3  # 20 nights took 6.5 minutes on two busy cores


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from benchmarks.retraining import MIN_AUC, run

    out = tmp_path_factory.mktemp("retraining")
    return run("flights", NIGHTS, LABEL_DELAY, out / "out", False, False, MIN_AUC, out), out / "out" / "flights"


@pytest.fixture(scope="module")
def rules():
    from benchmarks.retraining import MIN_AUC, STREAMS, _params

    return _params(STREAMS["flights"], LABEL_DELAY, MIN_AUC).retraining


def test_every_night_is_scored_and_tabled(report):
    result, out = report
    nights = result["nights"]
    first = dt.date(2013, 1, 31)
    assert [n["day"] for n in nights] == [str(first + dt.timedelta(days=i)) for i in range(NIGHTS)]
    assert all(n["version"] is not None and 0 < n["auc"] < 1 for n in nights), [(n["day"], n["auc"]) for n in nights]
    assert (out / "nights.md").read_text().count("\n| ") == NIGHTS  # one table row per night
    assert (out / "auc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_night_fails_and_every_night_has_a_drift_verdict(report):
    nights = report[0]["nights"]
    failed = [(n["day"], n["failures"]) for n in nights if n["failures"]]
    # Days whose weather station reported no gusts at all (wind_gust empty) are verdicts, not failures.
    assert failed == []
    assert all(n["verdict"] in ("drift", "no drift") for n in nights), [(n["day"], n["verdict"]) for n in nights]
    assert "goal: no failed night: met" in (report[1] / "summary.md").read_text()


def test_retrain_requests_follow_the_retraining_rules(report, rules):
    nights = report[0]["nights"]
    asked = [(n["night"], r) for n in nights for r in n["retrains"]]
    for night, retrain in asked:
        arrived = [d for d in retrain["labelled_days"] if d >= nights[0]["day"]]
        assert len(arrived) >= rules.min_labelled_days, (night, retrain)
        assert night >= LABEL_DELAY + rules.min_labelled_days, (night, retrain)  # the first labels come on night 4
    for (earlier, _), (later, _) in itertools.pairwise(asked):
        assert later - earlier >= rules.cooldown_days, [night for night, _ in asked]
    for n in nights:
        assert n["retrains"] or n["skip_reason"], n  # a quiet tick says why
        waiting = re.search(r"\((\d+) of (\d+) days labelled\)", n["skip_reason"])
        if waiting:
            assert int(waiting[1]) < int(waiting[2]) == rules.min_labelled_days, n
        if "cooldown" in n["skip_reason"]:
            assert any(0 < n["night"] - night < rules.cooldown_days for night, _ in asked), n
    # A promoted version scores the next day; a blocked one never does.
    for night, retrain in asked:
        if retrain["promoted"] and night < NIGHTS:
            assert nights[night]["version"] == retrain["version"], (night, retrain)
    versions = [n["version"] for n in nights]
    assert len(set(versions)) == 1 + sum(r["promoted"] for night, r in asked if night < NIGHTS), versions


def test_baselines_give_finite_aucs_on_the_same_days(report):
    result, _ = report
    rows = {row["policy"]: row for row in result["results"]}
    assert len(rows) == 6  # the project, four calendar policies and the hindsight limit
    for row in rows.values():
        assert len(row["aucs"]) == NIGHTS
        assert all(math.isfinite(a) and 0 < a < 1 for a in row["aucs"]), row
        assert 0.5 < row["mean_auc"] < 1, row
    assert rows["static (first 30 days)"]["retrains"] == 0
    assert rows["weekly, 28-day window"]["retrains"] == (NIGHTS - 1) // 7
    # One per night whose scoring can use new labels: night d's model knows days up to d - delay - 1.
    assert rows["daily, 28-day window"]["retrains"] == NIGHTS - LABEL_DELAY - 1
    assert "ahead" not in rows["daily, 28-day window"]  # the matrix stays out of results.json


def test_the_hindsight_limit_is_a_schedule_of_the_daily_models(report):
    from benchmarks.retraining import HINDSIGHT

    result, out = report
    rows = {row["policy"]: row for row in result["results"]}
    limit, daily = rows[HINDSIGHT], rows["daily, 28-day window"]
    assert limit["retrains"] <= rows["weekly, 28-day window"]["retrains"] // 3
    assert limit["mean_auc"] == pytest.approx(sum(limit["aucs"]) / NIGHTS)
    # Until its first switch the limit serves the daily calendar's first model, which the calendar
    # replaces on the first night its scoring can use labels (night LABEL_DELAY + 2).
    first = min((limit["nights"] or [NIGHTS + 1])[0] - 1, LABEL_DELAY + 1)
    assert limit["aucs"][:first] == daily["aucs"][:first]
    assert "limit: a perfect trigger with" in (out / "summary.md").read_text()


def test_a_retrain_reaches_back_into_the_raw_days_and_chooses_its_window_as_the_model_is_used(report):
    # The flights rows are dated: the raw data's 30 days are days of the windows. A drift or decay
    # retrain is asked on a night whose newest labels are LABEL_DELAY days old: its window is chosen by
    # models trained without their newest LABEL_DELAY + 1 days, once it has more labelled days than that.
    asked = [r for n in report[0]["nights"] for r in n["retrains"] if r["gate_passed"] is not None]
    assert asked, "no retrain ran"
    for retrain in asked:
        assert retrain["raw_days"] == "2013-01-01..2013-01-30 (30 days of the windows)", retrain
    lagged = [r for r in asked if "without their newest" in r["window_reason"]]
    assert lagged, [r["window_reason"] for r in asked]
    assert all(f"without their newest {LABEL_DELAY + 1} days" in r["window_reason"] for r in lagged), lagged
    assert not any(r["run_key"].startswith("retrain-collapse") for r in lagged)
