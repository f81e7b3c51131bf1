"""The drift report: reference profile, a day's sample, and Evidently's verdicts read back right."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ml.drift import DriftError, _profile_columns, drift_report, load_capture, reference_profile
from ml.sample import StreamSample

SEED = 7


@pytest.fixture(scope="module")
def halves(spec, telco_raw):
    """Two disjoint random halves of the Telco rows, each with beta-distributed scores (~3,500 rows each)."""
    shuffled = telco_raw.sample(frac=1.0, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    scores = rng.beta(2, 5, len(shuffled))
    half = len(shuffled) // 2
    reference = reference_profile(shuffled[:half], scores[:half], spec, max_rows=10_000, seed=SEED)
    current = reference_profile(shuffled[half:], scores[half:], spec, max_rows=10_000, seed=SEED)
    return reference, current


@pytest.fixture(scope="module")
def shifted_report(spec, halves):
    reference, current = halves
    shifted = current.copy()
    shifted["tenure"] = shifted["tenure"] * 1.3
    shifted["contract"] = shifted["contract"].map(
        {"Month-to-month": "Two year", "One year": "Month-to-month", "Two year": "One year"}
    )
    return reference, shifted, drift_report(reference, shifted, spec, drift_share=0.5)


def test_two_samples_of_the_same_data_do_not_drift(spec, halves):
    reference, current = halves
    result = drift_report(reference, current, spec, drift_share=0.5)
    assert result.verdict == "no drift"
    assert not result.dataset_drift and not result.prediction["drifted"]
    assert result.drift_share <= 0.1
    assert (result.reference_rows, result.current_rows) == (len(reference), len(current))
    # A complete, self-contained Evidently page that draws the report's widgets.
    html = result.html.strip()
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</html>")
    assert "window.drawDashboard(" in html and "tenure" in html
    assert "html" not in result.to_dict()


def test_shifted_columns_drift_with_evidently_methods_scores_and_thresholds(spec, shifted_report):
    _, _, result = shifted_report
    assert set(result.drifted_columns) == {"tenure", "contract"}
    by_column = {c["column"]: c for c in result.columns}
    assert list(by_column) == spec.feature_columns
    # Over 1,000 reference rows Evidently picks distances: Wasserstein for numbers, Jensen-Shannon otherwise.
    assert by_column["tenure"]["method"].startswith("Wasserstein")
    assert by_column["contract"]["method"].startswith("Jensen-Shannon")
    assert by_column["female"]["kind"] == "boolean" and by_column["female"]["method"].startswith("Jensen-Shannon")
    for column in result.columns:
        assert column["threshold"] == pytest.approx(0.1)
        assert column["drifted"] == (column["score"] >= column["threshold"])
    assert result.drift_share == pytest.approx(2 / len(spec.feature_columns))
    assert result.verdict == "no drift"  # 2 of 19 columns is below a share of 0.5, and the scores did not move
    assert json.loads(json.dumps(result.to_dict()))["drifted_columns"] == result.drifted_columns


def test_the_verdict_follows_the_drift_share_threshold(spec, shifted_report):
    reference, shifted, _ = shifted_report
    share = 2 / len(spec.feature_columns)
    at = drift_report(reference, shifted, spec, drift_share=share)
    assert at.dataset_drift and at.verdict == "drift" and at.drift_share_threshold == share
    assert not at.prediction["drifted"]


def test_a_shifted_score_alone_is_prediction_drift(spec, halves):
    reference, current = halves
    moved = current.assign(prediction=np.clip(current["prediction"] + 0.15, 0, 1))
    result = drift_report(reference, moved, spec, drift_share=0.5)
    assert result.prediction["drifted"] and result.prediction["score"] > result.prediction["threshold"]
    assert result.prediction["method"].startswith("Wasserstein")
    assert result.drifted_columns == [] and not result.dataset_drift
    assert result.verdict == "drift"


def test_reference_profile_keeps_feature_columns_and_rows_by_id(spec, telco_raw):
    scores = np.arange(len(telco_raw)) / len(telco_raw)  # unique: a kept row is known by its score
    profile = reference_profile(telco_raw, scores, spec, max_rows=1000, seed=SEED)
    assert list(profile.columns) == [*spec.feature_columns, "prediction"]
    assert len(profile) == 1000
    assert set(profile["female"].unique()) == {"true", "false"}
    pd.testing.assert_frame_equal(profile, reference_profile(telco_raw, scores, spec, max_rows=1000, seed=SEED))
    assert not profile.equals(reference_profile(telco_raw, scores, spec, max_rows=1000, seed=SEED + 1))
    # Shuffling the rows does not change which are kept: a row is chosen by its id's hash, not its place.
    order = np.random.default_rng(1).permutation(len(telco_raw))
    shuffled = reference_profile(telco_raw.iloc[order], scores[order], spec, max_rows=1000, seed=SEED)
    assert set(shuffled["prediction"]) == set(profile["prediction"])
    # Appending rows only lets new rows displace kept ones; no earlier row comes in.
    extra = telco_raw.assign(customer_id=telco_raw["customer_id"] + "-new")
    grown = reference_profile(
        pd.concat([telco_raw, extra]), np.concatenate([scores, scores + 1]), spec, max_rows=1000, seed=SEED
    )
    old = set(grown["prediction"][grown["prediction"] < 1])
    assert old < set(profile["prediction"]) and 300 < len(old) < 700


def test_reference_profile_errors_name_the_problem(spec, telco_raw):
    scores = np.zeros(len(telco_raw))
    with pytest.raises(DriftError, match="empty"):
        reference_profile(telco_raw[:0], scores[:0], spec, max_rows=10, seed=SEED)
    with pytest.raises(DriftError, match=r"missing columns \['tenure'\]"):
        reference_profile(telco_raw.drop(columns="tenure"), scores, spec, max_rows=10, seed=SEED)
    with pytest.raises(DriftError, match="one score per row"):
        reference_profile(telco_raw, scores[:-1], spec, max_rows=10, seed=SEED)


def test_drift_report_refuses_frames_it_cannot_compare(spec, halves):
    reference, current = halves
    with pytest.raises(DriftError, match="reference frame has no 'prediction' column"):
        drift_report(reference.drop(columns="prediction"), current, spec, drift_share=0.5)
    with pytest.raises(DriftError, match="current frame is empty"):
        drift_report(reference, current[:0], spec, drift_share=0.5)
    with pytest.raises(DriftError, match=r"current frame is missing columns \['contract'\]"):
        drift_report(reference, current.drop(columns="contract"), spec, drift_share=0.5)


@pytest.mark.parametrize("batch_rows", [500, 3000, 7043])
def test_a_streamed_sample_keeps_the_rows_the_reference_profile_keeps(spec, telco_raw, batch_rows):
    """The scorer samples its capture batch by batch; the result is the in-memory sample, in row order."""
    scores = np.arange(len(telco_raw)) / len(telco_raw)
    table = pa.Table.from_pandas(telco_raw.assign(score=scores), preserve_index=False)
    sample = StreamSample(800, spec.id.column, SEED)
    for batch in table.to_batches(max_chunksize=batch_rows):
        sample.add(pa.Table.from_batches([batch]))
    streamed = sample.table(table.schema).to_pandas()
    assert sample.seen == len(telco_raw) and len(streamed) == 800
    expected = reference_profile(telco_raw, scores, spec, max_rows=800, seed=SEED)
    profile = _profile_columns(streamed, spec, streamed["score"].to_numpy())
    pd.testing.assert_frame_equal(profile, expected)
    everything = StreamSample(None, spec.id.column, SEED)
    for batch in table.to_batches(max_chunksize=batch_rows):
        everything.add(pa.Table.from_batches([batch]))
    np.testing.assert_array_equal(everything.table(table.schema).column("score").to_numpy(), scores)


def test_a_capture_is_read_as_a_profile_and_refused_by_name_when_it_lacks_a_column(spec, telco_raw, tmp_path):
    capture = telco_raw.drop(columns=spec.target.column).assign(score=0.25)
    capture.to_parquet(tmp_path / "capture.parquet", index=False)
    profile = load_capture(str(tmp_path / "capture.parquet"), spec)
    assert list(profile.columns) == [*spec.feature_columns, "prediction"] and len(profile) == len(telco_raw)
    capture.drop(columns="score").to_parquet(tmp_path / "noscore.parquet", index=False)
    with pytest.raises(DriftError, match=r"capture .*noscore.parquet is missing columns \['score'\]"):
        load_capture(str(tmp_path / "noscore.parquet"), spec)
    with pytest.raises(DriftError, match="capture not found: .*nowhere.parquet; score the day first"):
        load_capture(str(tmp_path / "nowhere.parquet"), spec)
