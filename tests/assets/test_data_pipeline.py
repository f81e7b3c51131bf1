"""The real Telco data through import -> checks -> training set, materialized by Dagster in a project copy."""

import dagster as dg
import pandas as pd
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from assets.features import features
from assets.raw_data import raw_data
from assets.training_set import DAY_COLUMN, training_set
from data_checks.groups import CHECK_NAMES
from ml import io
from ml.features import FeatureState
from orchestration.deployments import local
from tests.conftest import dvc, lock_md5, set_params

ASSETS = [raw_data, training_set, features]


def materialize(project, instance, assets=ASSETS, **kwargs):
    return dg.materialize(assets, resources=local(project), instance=instance, raise_on_error=False, **kwargs)


def latest(instance, key):
    return instance.get_latest_materialization_event(key).asset_materialization


def data_version(instance, key) -> str:
    return latest(instance, key).tags["dagster/data_version"]


def test_pipeline_materializes_with_dvc_version_and_passing_checks(project, instance):
    result = materialize(project, instance)
    assert result.success
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == dict.fromkeys(CHECK_NAMES, True)

    raw = latest(instance, raw_data.key)
    md5 = lock_md5(project)
    assert data_version(instance, raw_data.key) == md5
    assert raw.metadata["dvc_md5"].value == md5
    assert raw.metadata["dagster/row_count"].value == 7043
    assert raw.metadata["columns"].value == 21
    profile = {r.data["column"]: r.data for r in raw.metadata["profile"].value.records}
    assert len(profile) == 21 and profile["total_charges"]["missing"] == 11
    described = {c.name: c.description for c in raw.metadata["dagster/column_schema"].value.columns}
    assert described["churn"] == "target: 'Yes' positive, 'No' negative"
    assert len(raw.metadata["git_revision"].value) >= 40  # the copy is a git repo with one commit

    built = latest(instance, features.key).metadata
    table = pd.read_parquet(built["table"].value)
    state = FeatureState.from_dict(io.read_json(built["feature_state"].value))
    # The labelled day each row came from is kept: a retrain's windows are sets of days.
    assert list(table.columns) == ["customer_id", "split", *state.columns, "label", DAY_COLUMN]
    assert len(table) == 7043 and table["label"].sum() == 1869
    meta = latest(instance, training_set.key).metadata
    assert meta["raw_data_version"].value == md5
    assert built["feature_count"].value == len(state.columns)
    # The feature state saw the train rows only; the holdout's raw rows are kept for scoring any model.
    train_rows = int((table["split"] == "train").sum())
    assert state.fitted_rows == train_rows == meta["train_rows"].value
    assert 0.18 < meta["holdout_rows"].value / 7043 < 0.22
    holdout = pd.read_parquet(meta["holdout_rows_table"].value)
    assert set(holdout["customer_id"]) == set(table.loc[table["split"] == "holdout", "customer_id"])


def stale_status(instance, key) -> StaleStatus:
    """What the UI shows as stale, from Dagster's own resolver (through its test helper)."""
    return get_stale_status_resolver(instance, [raw_data, training_set]).get_status(key)


def test_changed_source_gives_a_new_data_version_and_stale_training_set(project, instance):
    before = data_version(instance, raw_data.key)
    assert stale_status(instance, training_set.key) == StaleStatus.FRESH

    # Same data again: same version, the training set stays fresh.
    assert materialize(project, instance, [raw_data]).success
    assert data_version(instance, raw_data.key) == before
    assert stale_status(instance, training_set.key) == StaleStatus.FRESH

    # New source file (one more month for one customer): a new DVC hash and data version.
    source = pd.read_csv(project / "data" / "source" / "telco_churn.csv")
    source.loc[0, "tenure"] += 1
    source.to_csv(project / "data" / "source" / "telco_churn_v2.csv", index=False)
    set_params(project, dataset={"source": {"uri": "data/source/telco_churn_v2.csv"}})
    assert materialize(project, instance, [raw_data]).success
    after = data_version(instance, raw_data.key)
    assert after != before and after == lock_md5(project)
    assert stale_status(instance, training_set.key) == StaleStatus.STALE


def test_training_set_refuses_raw_data_whose_checks_failed(project, instance):
    bad = pd.read_csv(project / "data" / "source" / "telco_churn.csv").drop(columns=["contract"])
    bad.to_csv(project / "data" / "source" / "bad.csv", index=False)
    set_params(project, dataset={"source": {"uri": "data/source/bad.csv"}})
    assert not materialize(project, instance, [raw_data]).success

    # A later run of `training_set` alone must not build on the failed data either.
    table = latest(instance, features.key).metadata["table"].value
    before = io.file_digest(table)
    result = materialize(project, instance, ASSETS, selection=[training_set])
    assert not result.success
    failure = result.failure_data_for_node("training_set").error.message
    assert "raw_data did not pass its data checks" in failure and "schema: failed" in failure
    assert io.file_digest(table) == before
    assert len(instance.fetch_materializations(training_set.key, limit=10).records) == 1


def test_raw_data_cannot_be_materialized_without_its_checks(project, instance):
    # The checks run on the rows the asset read, in the same step: selecting the asset selects them.
    set_params(project, features={"min_category_count": 6})  # any change, so DVC has nothing to redo
    result = materialize(project, instance, [raw_data])
    assert result.success
    checked = {(e.asset_key, e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checked == {(raw_data.key, name): True for name in CHECK_NAMES}
    assert materialize(project, instance, ASSETS, selection=[training_set]).success


def test_training_set_refuses_raw_data_changed_outside_dagster(project, instance):
    # Someone runs `dvc repro` on new data by hand: the file on disk is no longer what was checked.
    source = pd.read_csv(project / "data" / "source" / "telco_churn.csv").head(3000)
    source.to_csv(project / "data" / "source" / "smaller.csv", index=False)
    set_params(project, dataset={"source": {"uri": "data/source/smaller.csv"}})
    dvc("repro", "import_raw", cwd=project)
    result = materialize(project, instance, ASSETS, selection=[training_set])
    assert not result.success
    message = result.failure_data_for_node("training_set").error.message
    assert f"data/raw/data.parquet (md5 {lock_md5(project)}) is not the version raw_data last materialized" in message


def test_raw_data_without_the_positive_label_fails_its_validity_check_naming_the_label(project, instance):
    """Every row 'No' passes each value check, but no model can learn churn from it: the raw data's validity
    check names the label the spec expects and the values the column holds."""
    source = pd.read_csv(project / "data" / "source" / "telco_churn.csv").assign(churn="No")
    source.to_csv(project / "data" / "source" / "no_churn.csv", index=False)
    set_params(project, dataset={"source": {"uri": "data/source/no_churn.csv"}})
    result = materialize(project, instance, [raw_data])
    assert not result.success
    failed = {e.check_name: e.description for e in result.get_asset_check_evaluations() if not e.passed}
    assert list(failed) == ["validity"], failed
    assert "dataset.target.positive 'Yes' is not among column 'churn''s values ['No']" in failed["validity"]
