"""The drift report: reference profile, a day's sample, and Evidently's verdicts read back right."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ml.drift import DAY, DriftError, _profile_columns, drift_report, drift_verdict, load_capture, reference_profile
from ml.drift_calibration import calibrate_column, method_for, score
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


def test_shifted_columns_drift_against_calibrated_thresholds(spec, shifted_report):
    _, _, result = shifted_report
    assert {"tenure", "contract"} <= set(result.drifted_columns) and len(result.drifted_columns) <= 3
    by_column = {c["column"]: c for c in result.columns}
    assert list(by_column) == spec.feature_columns
    # Distances for every size: Wasserstein for numbers, Jensen-Shannon for categories and booleans.
    assert by_column["tenure"]["method"] == "wasserstein"
    assert by_column["contract"]["method"] == "jensenshannon"
    assert by_column["female"]["kind"] == "boolean" and by_column["female"]["method"] == "jensenshannon"
    for column in result.columns:
        assert 0 < column["threshold"] < 1 and "random splits" in column["calibration"]
        assert column["drifted"] == (column["score"] > column["threshold"])
    assert by_column["tenure"]["reason"].startswith("distribution outside the reference's normal variation")
    # Without an importance every column weighs the same; without the model's scores that share decides:
    # a few of 19 equal columns are not half. The scores (random here) did not move.
    assert result.drift_share == pytest.approx(len(result.drifted_columns) / len(spec.feature_columns))
    assert result.drift_share < 0.5 and result.impact is None
    assert not result.dataset_drift and result.rules == [] and result.verdict == "no drift"
    assert result.because.startswith("no drift (rules fired: none); importance: drifted columns carry 0.11 < 0.50")
    assert json.loads(json.dumps(result.to_dict()))["drifted_columns"] == result.drifted_columns
    # The page says the verdict, the rules and each column's test, threshold and calibration on top of
    # Evidently's, and Evidently's own data-set line (its count of columns) is not there to contradict it.
    assert "Verdict: no drift" in result.html and "calibrated on the reference" in result.html
    assert "Rules fired: <b>none</b>" in result.html and "Dataset Drift is" not in result.html
    assert "window.drawDashboard(" in result.html


def test_the_verdict_weighs_drifted_columns_by_the_models_importance(spec, halves):
    reference, current = halves
    mild = current.assign(tenure=current["tenure"] * 1.06)  # drifted, but not far outside normal
    on_tenure = {c: (0.6 if c == "tenure" else 0.4 / 18) for c in spec.feature_columns}
    elsewhere = {c: (0.0 if c == "tenure" else 1.0) for c in spec.feature_columns}
    heavy = drift_verdict(reference, mild, spec, drift_share=0.3, importance=on_tenure)
    light = drift_verdict(reference, mild, spec, drift_share=0.3, importance=elsewhere)
    tenure = next(c for c in heavy.columns if c["column"] == "tenure")
    assert tenure["drifted"] and "far outside" not in tenure["reason"]
    assert heavy.dataset_drift and heavy.verdict == "drift" and heavy.drift_share == pytest.approx(0.6)
    assert not light.dataset_drift and light.drift_share < 0.3


def test_the_verdict_does_not_depend_on_the_column_count(spec, halves):
    """One wholly changed column the model leans on drifts the data set, however many columns there are."""
    reference, current = halves
    changed = current.assign(payment_method="Bitcoin")
    importance = {c: (0.4 if c == "payment_method" else 0.6 / 18) for c in spec.feature_columns}
    result = drift_report(reference, changed, spec, drift_share=0.3, importance=importance)
    column = next(c for c in result.columns if c["column"] == "payment_method")
    assert result.verdict == "drift" and column["drifted"]
    assert column["reason"].startswith("constant on this day") or "unseen" in column["reason"]


def test_a_shifted_score_alone_is_prediction_drift(spec, halves):
    reference, current = halves
    moved = current.assign(prediction=np.clip(current["prediction"] + 0.15, 0, 1))
    result = drift_report(reference, moved, spec, drift_share=0.5)
    assert result.prediction["drifted"] and result.prediction["score"] > result.prediction["threshold"]
    assert result.prediction["method"] == "wasserstein"
    assert not result.dataset_drift
    assert result.verdict == "drift" and "prediction" in result.rules
    assert "prediction: score distance" in result.because and "Verdict: drift" in result.html


def test_a_column_without_values_a_constant_and_a_new_category_are_verdicts_not_errors(spec, halves):
    reference, current = halves
    day = current.head(900).assign(
        total_charges=np.nan,  # the column is missing for every row of the day
        tenure=12.0,  # constant where the reference varies
        internet_service=["Satellite"] * 600 + list(current["internet_service"].head(300)),
    )
    result = drift_verdict(reference, day, spec, drift_share=0.3)
    by_column = {c["column"]: c for c in result.columns}
    assert by_column["total_charges"]["drifted"] and by_column["total_charges"]["reason"] == "no values on this day"
    assert by_column["total_charges"]["score"] is None
    assert by_column["tenure"]["drifted"] and by_column["tenure"]["reason"].startswith("constant on this day (12.0)")
    assert by_column["internet_service"]["drifted"]
    assert "unseen in the reference on 67% of rows ('Satellite')" in by_column["internet_service"]["reason"]
    page = drift_report(reference, day, spec, drift_share=0.3).html  # Evidently renders the rest of the day
    assert "no values on this day" in page


def test_scores_are_evidently_s_own(spec, halves):
    """The calibration's fast scores are the numbers Evidently's stattests give."""
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    reference, current = halves
    for column, kind, column_type in (
        ("tenure", "numeric", ColumnType.Numerical),
        ("contract", "categorical", ColumnType.Categorical),
    ):
        test = get_registered_stattest(method_for(kind), column_type)
        expected = test(reference[column].dropna(), current[column].dropna(), column_type, None).drift_score
        assert score(reference[column], current[column], kind) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("day_rows", "reference_rows"), [(100, 200), (1000, 2000), (2000, 5000)])
def test_days_without_drift_rarely_say_drift(day_rows, reference_rows):
    """Same-distribution days at several sizes: the false-alarm rate stays at or below 5 %."""
    from benchmarks.false_alarms import false_alarm_rate, population

    rows, spec = population()
    rate, what = false_alarm_rate(
        rows, spec, day_rows=day_rows, reference_rows=reference_rows, days=20, drift_share=0.3, importance=None, seed=3
    )
    assert rate <= 0.05, what


def test_reference_days_widen_the_thresholds_of_columns_that_vary_by_day(spec, halves):
    """A reference of whole days: a column whose days differ by nature gets a wider threshold."""
    reference, _ = halves
    days = np.repeat([f"2026-01-{d:02d}" for d in range(1, 11)], int(np.ceil(len(reference) / 10)))[: len(reference)]
    by_day = reference.assign(**{DAY: days})
    offset = pd.Series(days).str[-2:].astype(int).to_numpy()
    by_day["tenure"] = by_day["tenure"] + 3 * offset  # each day a little higher
    flat = calibrate_column(reference["tenure"], "numeric", 350)
    daily = calibrate_column(by_day["tenure"], "numeric", 350, days=by_day[DAY].to_numpy())
    assert daily.day_level is not None and daily.threshold > flat.threshold
    assert "reference days" in daily.basis


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


def test_the_report_page_is_the_stock_presets_page_without_its_data_set_line(spec, shifted_report, monkeypatch):
    """The report skips the per-column metrics the stock DataDriftPreset computes but never shows, and its
    "Dataset Drift is (NOT) detected" line: the rest of the page (the counts, the table) is the stock one."""
    import evidently.presets

    import ml.drift

    reference, shifted, result = shifted_report
    monkeypatch.setattr(ml.drift, "drift_table_preset", lambda: evidently.presets.DataDriftPreset)
    stock = drift_report(reference, shifted, spec, drift_share=0.5)
    assert "Dataset Drift is NOT detected" in stock.html and "Dataset Drift is" not in result.html
    for text in ("Drifted Columns", "Share of Drifted Columns", "tenure", "contract"):
        assert text in result.html
    assert len(result.html) > 100_000


def test_a_feature_with_no_values_on_the_day_makes_the_day_drift_whatever_its_importance(spec, halves):
    reference, current = halves
    day = current.assign(total_charges=np.nan)  # a nullable column, emptied by a broken feed
    importance = {c: 1.0 for c in spec.feature_columns} | {"total_charges": 0.001}
    result = drift_verdict(reference, day, spec, drift_share=0.5, importance=importance)
    assert result.verdict == "drift" and result.dataset_drift
    assert result.drifted_columns == ["total_charges"] and result.drift_share < 0.5
    assert {c["column"]: c["reason"] for c in result.columns}["total_charges"] == "no values on this day"


def test_the_page_refers_to_one_shared_script_instead_of_inlining_it(spec, shifted_report):
    from ml.drift import evidently_bundle, with_shared_bundle

    _, _, result = shifted_report
    name, bundle = evidently_bundle()
    page, shared = with_shared_bundle(result.html)
    assert shared == name and name.startswith("evidently-") and name.endswith(".js")
    assert f'<script src="{name}"></script>' in page and bundle not in page
    assert len(page) < len(result.html) - 3_000_000  # the page is its data, not the 3.5 MB bundle
    assert page.replace(f'<script src="{name}"></script>', f"<script>{bundle}</script>") == result.html
    assert with_shared_bundle("<html>no bundle</html>") == ("<html>no bundle</html>", None)
