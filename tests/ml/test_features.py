"""The feature code: fitted state, JSON round trip, defined behaviour at scoring time, one code path."""

import json

import numpy as np
import pandas as pd
import pytest

from ml.features import (
    FeatureConfig,
    FeatureError,
    FeatureState,
    encode_target,
    feature_table,
    fit_features,
    transform,
)


@pytest.fixture(scope="module")
def state(spec, telco_raw) -> FeatureState:
    return fit_features(telco_raw, spec, FeatureConfig())


def test_state_is_plain_json_and_round_trips(state):
    text = state.to_json()
    assert json.loads(text)["version"] == 1
    assert FeatureState.from_json(text) == state


def test_state_learns_from_training_rows(spec, telco_raw, state):
    tenure = next(n for n in state.numeric if n.column == "tenure")
    assert tenure.lower >= telco_raw["tenure"].min() and tenure.upper <= telco_raw["tenure"].max()
    assert tenure.fill == pytest.approx(telco_raw["tenure"].clip(tenure.lower, tenure.upper).median())
    contract = next(c for c in state.categorical if c.column == "contract")
    assert contract.levels == ["Month-to-month", "One year", "Two year"]
    assert contract.names == ["contract__month_to_month", "contract__one_year", "contract__two_year"]
    total = next(n for n in state.numeric if n.column == "total_charges")
    assert total.missing_indicator  # declared nullable in the spec
    assert not tenure.missing_indicator


def test_training_and_scoring_paths_give_identical_features(spec, telco_raw, state):
    training = feature_table(telco_raw, state, spec, with_target=True)
    # Scoring path: the state reloaded from JSON, the rows in shuffled chunks, without the target.
    reloaded = FeatureState.from_json(state.to_json())
    shuffled = telco_raw.sample(frac=1.0, random_state=7).drop(columns=[spec.target.column])
    chunks = [
        feature_table(shuffled.iloc[i : i + 1500], reloaded, spec, with_target=False)
        for i in range(0, len(shuffled), 1500)
    ]
    scoring = pd.concat(chunks).set_index(spec.id.column).loc[training[spec.id.column]].reset_index()
    pd.testing.assert_frame_equal(scoring, training.drop(columns=["label"]), check_exact=True)


def test_unseen_and_missing_categories(spec, telco_raw, state):
    rows = telco_raw.head(3).copy()
    rows.loc[rows.index[0], "contract"] = "Weekly"  # never seen in training
    rows.loc[rows.index[1], "contract"] = None
    out = transform(rows, state)
    contract_cols = [c for c in out.columns if c.startswith("contract__")]
    assert out.loc[rows.index[0], contract_cols].to_dict() == {
        "contract__month_to_month": 0.0,
        "contract__one_year": 0.0,
        "contract__two_year": 0.0,
        "contract__other__": 1.0,
        "contract__missing__": 0.0,
    }
    assert out.loc[rows.index[1], "contract__missing__"] == 1.0
    assert out.loc[rows.index[1], contract_cols].sum() == 1.0
    assert out.loc[rows.index[2], ["contract__other__", "contract__missing__"]].sum() == 0.0


def test_rare_levels_fold_into_other(spec, telco_raw):
    rows = telco_raw.copy()
    rows.loc[rows.index[:3], "payment_method"] = "Cheque by pigeon"  # 3 < min_category_count (5)
    state = fit_features(rows, spec, FeatureConfig(min_category_count=5))
    payment = next(c for c in state.categorical if c.column == "payment_method")
    assert "Cheque by pigeon" not in payment.levels
    assert transform(rows.head(1), state)["payment_method__other__"].iloc[0] == 1.0


def test_missing_numeric_values_take_the_median_and_set_the_indicator(spec, telco_raw, state):
    rows = telco_raw.head(2).copy()
    rows.loc[rows.index[0], ["tenure", "total_charges"]] = np.nan
    out = transform(rows, state)
    tenure = next(n for n in state.numeric if n.column == "tenure")
    total = next(n for n in state.numeric if n.column == "total_charges")
    assert out["tenure"].iloc[0] == tenure.fill
    assert out["total_charges"].iloc[0] == total.fill and out["total_charges__missing__"].iloc[0] == 1.0
    assert out["total_charges__missing__"].iloc[1] == 0.0


def test_out_of_range_numbers_are_clipped_to_training_bounds(spec, telco_raw, state):
    rows = telco_raw.head(2).copy()
    rows["monthly_charges"] = [1e9, -1e9]
    out = transform(rows, state)
    bounds = next(n for n in state.numeric if n.column == "monthly_charges")
    assert out["monthly_charges"].tolist() == [bounds.upper, bounds.lower]


def test_missing_boolean_takes_training_mode_and_unknown_token_is_an_error(spec, telco_raw, state):
    rows = telco_raw.head(2).copy()
    rows["partner"] = rows["partner"].astype(object)
    rows.loc[rows.index[0], "partner"] = None
    fill = next(b for b in state.boolean if b.column == "partner").fill
    assert transform(rows, state)["partner"].iloc[0] == fill
    rows.loc[rows.index[1], "partner"] = "maybe"
    with pytest.raises(
        FeatureError, match=r"boolean column 'partner' has values that are neither true nor false: \['maybe'\]"
    ):
        transform(rows, state)


def test_booleans_match_across_representations(spec, telco_raw, state):
    rows = telco_raw.head(4).copy()
    rows["female"] = pd.Series([True, 1.0, "1", 0], index=rows.index, dtype=object)
    assert transform(rows, state)["female"].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_non_numeric_value_is_an_error_naming_the_column(spec, telco_raw, state):
    rows = telco_raw.head(2).copy()
    rows["tenure"] = rows["tenure"].astype(object)
    rows.loc[rows.index[0], "tenure"] = "ten"
    with pytest.raises(FeatureError, match=r"column 'tenure' has non-numeric values: \['ten'\]"):
        transform(rows, state)


def test_missing_feature_column_is_an_error(spec, telco_raw, state):
    with pytest.raises(FeatureError, match=r"feature columns missing from the rows: \['contract'\]"):
        transform(telco_raw.drop(columns=["contract"]), state)


def test_target_encoding(spec, telco_raw):
    labels = encode_target(telco_raw, spec)
    assert set(labels.unique()) == {0, 1}
    assert labels.mean() == pytest.approx((telco_raw["churn"] == "Yes").mean())
    bad = telco_raw.head(2).assign(churn=["Yes", "Maybe"])
    with pytest.raises(FeatureError, match=r"target column 'churn' has values other than 'Yes' / 'No': \['Maybe'\]"):
        encode_target(bad, spec)


def test_feature_names_are_safe_for_lightgbm(state):
    assert all(not set(name) & set("\"',:[]{} ") for name in state.columns)
    assert len(set(state.columns)) == len(state.columns)


def test_outputs_are_float_without_nans(spec, telco_raw, state):
    out = transform(telco_raw, state)
    assert (out.dtypes == "float64").all() and not out.isna().any().any()
    assert list(out.columns) == state.columns


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="clip_quantiles"):
        FeatureConfig.model_validate({"clip_quantiles": [0.9, 0.1]})
    with pytest.raises(ValueError, match="clip\n  Extra inputs are not permitted"):
        FeatureConfig.model_validate({"clip": 1})


RENAMED = {
    "monthly_charges": "monthly charges",
    "internet_service": "internet-service",
    "senior_citizen": "senior citizen",
}


def _renamed_spec(spec):
    """The example spec with column names as users often have them: spaces and hyphens."""
    from ml.spec import DatasetSpec

    text = json.dumps(spec.model_dump(mode="json"))
    for old, new in RENAMED.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    return DatasetSpec.model_validate(json.loads(text))


def test_columns_named_with_spaces_and_hyphens_train_and_score(spec, telco_raw):
    from ml.features import source_columns
    from ml.models import fit_model

    renamed_spec, rows = _renamed_spec(spec), telco_raw.rename(columns=RENAMED)
    state = fit_features(rows, renamed_spec, FeatureConfig())
    assert "monthly_charges" in state.columns and "monthly charges" not in state.columns
    assert any(name.startswith("internet_service__") for name in state.columns)
    features = transform(rows, state)
    model = fit_model("lightgbm", features, encode_target(rows, renamed_spec).to_numpy(), {"n_estimators": 5}, 0)
    assert model.predict(transform(rows.head(50), FeatureState.from_json(state.to_json()))).shape == (50,)
    # The importance of each output column goes back to the column as the user named it.
    sources = {source_columns(state)[name] for name in model.importance()}
    assert {"monthly charges", "internet-service", "senior citizen"} <= sources


def test_two_columns_with_the_same_safe_name_stay_apart(spec, telco_raw):
    from ml.features import _safe_names

    names = _safe_names(["dew point", "dew-point", "dew_point"])
    assert len(set(names.values())) == 3 and names["dew point"] == "dew_point"


def awkward(telco_raw: pd.DataFrame) -> pd.DataFrame:
    """Real rows with missing numbers, categories and booleans, unseen categories and out-of-range numbers."""
    rows = pd.concat([telco_raw] * 2, ignore_index=True)
    rows.loc[::7, "total_charges"] = np.nan
    rows.loc[::5, "monthly_charges"] = np.nan
    rows.loc[3::11, "tenure"] = 10**6
    rows.loc[1::4, "contract"] = "Decade-long"
    rows.loc[2::6, "payment_method"] = None
    rows.loc[3::9, "partner"] = None
    return rows


def test_arrow_rows_as_the_scorer_reads_them_give_the_training_matrix(spec, telco_raw, state, tmp_path):
    """One feature code path: the scorer's Arrow chunks (text read as dictionaries, several row groups'
    dictionaries unified) give exactly the matrix training computes from pandas."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ml.features import feature_matrix
    from ml.score import _batches

    rows = awkward(telco_raw)
    training = transform(rows, state).to_numpy()
    assert np.isnan(rows["total_charges"]).any() and (training[:, state.columns.index("contract__other__")] == 1).any()
    table = pa.Table.from_pandas(rows, preserve_index=False)
    np.testing.assert_array_equal(feature_matrix(table, state), training)

    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=1000)
    text = [c.column for c in (*state.categorical, *state.boolean)]
    parquet = pq.ParquetFile(tmp_path / "rows.parquet", read_dictionary=text)
    chunks = list(_batches(parquet, state.input_columns, 2500, "rows.parquet"))
    assert pa.types.is_dictionary(chunks[0].schema.field("contract").type)
    assert [len(c) for c in chunks[:-1]] == [2500] * (len(rows) // 2500)
    np.testing.assert_array_equal(np.vstack([feature_matrix(c, state) for c in chunks]), training)

    bad = pa.Table.from_pandas(rows.astype({"female": object}).assign(female="maybe"), preserve_index=False)
    with pytest.raises(FeatureError, match="boolean column 'female' has values that are neither true nor false"):
        feature_matrix(bad, state)
