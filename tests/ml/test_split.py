"""The holdout split: seeded by id, stable as rows are added, by time when there is a timestamp."""

from __future__ import annotations

import pandas as pd
import pytest

from ml.spec import TimestampSpec
from ml.split import HOLDOUT, TRAIN, SplitError, assign_split


def test_split_is_seeded_and_sized(spec, telco_raw):
    first = assign_split(telco_raw, spec, fraction=0.2, seed=42)
    again = assign_split(telco_raw, spec, fraction=0.2, seed=42)
    other = assign_split(telco_raw, spec, fraction=0.2, seed=43)
    pd.testing.assert_series_equal(first, again)
    assert not first.equals(other)
    assert set(first.unique()) == {TRAIN, HOLDOUT}
    assert (first == HOLDOUT).mean() == pytest.approx(0.2, abs=0.02)


def test_a_row_keeps_its_side_when_rows_are_added_or_reordered(spec, telco_raw):
    whole = assign_split(telco_raw, spec, fraction=0.2, seed=42)
    part = telco_raw.sample(frac=0.5, random_state=1)
    pd.testing.assert_series_equal(assign_split(part, spec, fraction=0.2, seed=42), whole.loc[part.index])


def test_with_a_timestamp_the_holdout_is_the_latest_rows(spec, telco_raw):
    timed = spec.model_copy(update={"timestamp": TimestampSpec(column="seen_at")})
    frame = telco_raw.assign(seen_at=pd.date_range("2026-01-01", periods=len(telco_raw), freq="h"))
    shuffled = frame.sample(frac=1.0, random_state=3)
    split = assign_split(shuffled, timed, fraction=0.25, seed=42)
    held = shuffled.loc[split == HOLDOUT, "seen_at"]
    trained = shuffled.loc[split == TRAIN, "seen_at"]
    assert len(held) == -(-len(frame) * 25 // 100)  # ceil(25 %)
    assert held.min() > trained.max()  # every holdout row is later than every training row


def test_with_a_timestamp_ties_at_the_cut_are_split_by_the_id_hash(spec, telco_raw):
    timed = spec.model_copy(update={"timestamp": TimestampSpec(column="seen_at")})
    frame = telco_raw.assign(seen_at=pd.Timestamp("2026-01-01"))  # one instant: the id's hash decides
    first = assign_split(frame, timed, fraction=0.2, seed=42)
    pd.testing.assert_series_equal(first, assign_split(frame.iloc[::-1], timed, fraction=0.2, seed=42).loc[frame.index])
    assert not first.equals(assign_split(frame, timed, fraction=0.2, seed=43))


def test_recent_days_split_by_their_keys_lend_every_day_to_both_sides(spec, telco_raw):
    """A retrain's labelled days: each day trains and is judged, so a retrain learns the newest days."""
    timed = spec.model_copy(update={"timestamp": TimestampSpec(column="seen_at")})
    frame = telco_raw.assign(seen_at=pd.date_range("2026-01-01", periods=len(telco_raw), freq="h"))
    day = frame["seen_at"].dt.date.astype(str)
    split = assign_split(frame, timed, fraction=0.25, seed=42, keys=frame[spec.id.column] + "@" + day)
    by_day = split.groupby(day).agg(lambda sides: (sides == HOLDOUT).mean())
    assert (split[day == day.max()] == TRAIN).any()
    assert by_day.between(0.0, 0.6).all() and abs(by_day.mean() - 0.25) < 0.05


def test_a_timestamp_that_does_not_parse_is_named(spec, telco_raw):
    timed = spec.model_copy(update={"timestamp": TimestampSpec(column="seen_at")})
    frame = telco_raw.head(10).assign(seen_at=["2026-01-01"] * 9 + ["soon"])
    with pytest.raises(SplitError, match="timestamp column 'seen_at' has 1 missing or unreadable"):
        assign_split(frame, timed, fraction=0.2, seed=1)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_a_fraction_outside_zero_one_is_refused(spec, telco_raw, fraction):
    with pytest.raises(SplitError, match="holdout_fraction must be between 0 and 1"):
        assign_split(telco_raw, spec, fraction=fraction, seed=1)


def test_too_few_rows_for_both_sides_is_refused(spec, telco_raw):
    with pytest.raises(SplitError, match="both sides need rows"):
        assign_split(telco_raw.head(2), spec, fraction=0.01, seed=1)
