"""Bad input, each its own case, through the whole Dagster pipeline in a project copy.

Each asserts that the error names the problem (column, value or file) and that nothing downstream
was written: the features from the earlier good run stay as they were, and for files that cannot be
read at all, the previous raw data stays too.
"""

import dagster as dg
import pandas as pd
import pytest

from assets.features import features
from assets.raw_data import raw_data
from assets.training_set import training_set
from ml import io
from orchestration.deployments import local
from tests.conftest import set_params


@pytest.fixture
def source(project) -> pd.DataFrame:
    return pd.read_csv(project / "data" / "source" / "telco_churn.csv")


class Outcome:
    def __init__(self, project, instance, result):
        self.result = result
        self.failed_checks = {
            e.check_name: e.metadata["summary"].value for e in result.get_asset_check_evaluations() if not e.passed
        }
        self.features_written = instance.fetch_materializations(training_set.key, limit=10).records
        self.project = project

    def step_error(self, step: str) -> str:
        return self.result.failure_data_for_node(step).error.message


def run_pipeline(project, instance, *, write, name="incoming.csv", **dataset) -> Outcome:
    """Point the spec at a new source file written by `write(path)`, then run import -> checks -> training set."""
    path = project / "data" / "source" / name
    write(path)
    set_params(project, dataset={"source": {"uri": f"data/source/{name}"}, **dataset})
    return materialize_all(project, instance)


def materialize_all(project, instance) -> Outcome:
    """Import -> checks -> training set -> features in one run, as the prepare_data job does."""
    result = dg.materialize(
        [raw_data, training_set, features], resources=local(project), instance=instance, raise_on_error=False
    )
    return Outcome(project, instance, result)


@pytest.fixture
def guarded(project, instance):
    """Fingerprints of the good run's outputs, compared after the bad run."""

    table = instance.get_latest_materialization_event(features.key).asset_materialization.metadata["table"].value

    def fingerprints():
        return {
            "training_set": io.file_digest(table),
            "raw": io.file_digest(str(project / "data" / "raw" / "data.parquet")),
        }

    before = fingerprints()
    assert len(instance.fetch_materializations(training_set.key, limit=10).records) == 1
    yield before, fingerprints


def assert_nothing_downstream(outcome: Outcome, guarded, *, raw_kept: bool = False):
    before, fingerprints = guarded
    after = fingerprints()
    assert not outcome.result.success
    assert len(outcome.features_written) == 1, "the training set must not be materialized on bad input"
    assert after["training_set"] == before["training_set"], "the previous good training set must stay in place"
    if raw_kept:
        assert after["raw"] == before["raw"], "an unreadable source must not replace the raw data"


def csv(frame: pd.DataFrame):
    return lambda path: frame.to_csv(path, index=False)


def test_missing_column(project, instance, source, guarded):
    outcome = run_pipeline(project, instance, write=csv(source.drop(columns=["contract"])))
    assert set(outcome.failed_checks) == {"schema"}
    assert "expect_column_to_exist on column 'contract': column is missing" in outcome.failed_checks["schema"]
    assert_nothing_downstream(outcome, guarded)


def test_extra_column_is_rejected_by_default(project, instance, source, guarded):
    outcome = run_pipeline(project, instance, write=csv(source.assign(loyalty_points=3)))
    assert set(outcome.failed_checks) == {"schema"}
    assert "unexpected columns ['loyalty_points']" in outcome.failed_checks["schema"]
    assert_nothing_downstream(outcome, guarded)


def test_extra_column_is_kept_but_unused_when_ignored(project, instance, source):
    outcome = run_pipeline(project, instance, write=csv(source.assign(loyalty_points=3)), unexpected_columns="ignore")
    assert outcome.result.success and not outcome.failed_checks
    built = instance.get_latest_materialization_event(features.key).asset_materialization
    table = pd.read_parquet(built.metadata["table"].value)
    assert not any(c.startswith("loyalty_points") for c in table.columns)


def test_wrong_dtype(project, instance, source, guarded):
    bad = source.astype({"tenure": object})
    bad.loc[10, "tenure"] = "twelve"
    outcome = run_pipeline(project, instance, write=csv(bad))
    assert set(outcome.failed_checks) == {"schema"}
    summary = outcome.failed_checks["schema"]
    assert "on column 'tenure': type is object" in summary and "'twelve'" in summary
    assert_nothing_downstream(outcome, guarded)


def test_nulls_in_required_column(project, instance, source, guarded):
    bad = source.copy()
    bad.loc[[4, 9], "payment_method"] = None
    outcome = run_pipeline(project, instance, write=csv(bad))
    assert set(outcome.failed_checks) == {"completeness"}
    summary = outcome.failed_checks["completeness"]
    assert "on column 'payment_method': 2 missing value(s)" in summary and "customer_id=C0000005" in summary
    assert_nothing_downstream(outcome, guarded)


def test_out_of_range_value(project, instance, source, guarded):
    bad = source.copy()
    bad.loc[0, "monthly_charges"] = -12.5
    outcome = run_pipeline(project, instance, write=csv(bad))
    assert set(outcome.failed_checks) == {"validity"}
    assert (
        "on column 'monthly_charges': 1 value(s) outside [0.0, 500.0] (e.g. -12.5)" in outcome.failed_checks["validity"]
    )
    assert_nothing_downstream(outcome, guarded)


def test_unknown_category(project, instance, source, guarded):
    bad = source.copy()
    bad.loc[3, "contract"] = "Weekly"
    outcome = run_pipeline(project, instance, write=csv(bad))
    assert set(outcome.failed_checks) == {"validity"}
    assert "on column 'contract': 1 value(s) not in the allowed set" in outcome.failed_checks["validity"]
    assert "'Weekly'" in outcome.failed_checks["validity"]
    assert_nothing_downstream(outcome, guarded)


def test_duplicate_ids(project, instance, source, guarded):
    with_ids = source.assign(account=[f"A{n}" for n in range(len(source))])
    with_ids.loc[7, "account"] = "A3"
    outcome = run_pipeline(project, instance, write=csv(with_ids), id={"column": "account", "generate": None})
    assert set(outcome.failed_checks) == {"uniqueness"}
    assert (
        "on column 'account': 2 row(s) share an id with another row (e.g. 'A3')" in outcome.failed_checks["uniqueness"]
    )
    assert_nothing_downstream(outcome, guarded)


def test_header_only_file(project, instance, source, guarded):
    outcome = run_pipeline(project, instance, write=csv(source.head(0)))
    assert set(outcome.failed_checks) == {"volume"}
    assert "0 rows, expected between 1000 and 5000000" in outcome.failed_checks["volume"]
    assert_nothing_downstream(outcome, guarded)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("incoming.csv", b"", "is empty (0 bytes)"),
        ("incoming.csv", "tenure,contract\n3,Résumé\n".encode("latin-1"), "is not valid utf-8 text (byte 0xe9"),
        ("incoming.parquet", b"PAR1 truncated", "is not a readable Parquet file"),
    ],
    ids=["empty-file", "non-utf8", "unreadable-parquet"],
)
def test_unreadable_source_fails_the_import_and_keeps_the_raw_data(project, instance, guarded, name, content, problem):
    outcome = run_pipeline(project, instance, write=lambda path: path.write_bytes(content), name=name)
    message = outcome.step_error("raw_data")
    assert problem in message and f"data/source/{name}" in message
    assert "the previous raw data is kept" in message
    assert outcome.failed_checks == {}  # the checks never ran on anything
    assert_nothing_downstream(outcome, guarded, raw_kept=True)


def test_broken_spec_fails_before_dvc_runs(project, instance, guarded):
    params = project / "params.yaml"
    params.write_text(
        params.read_text().replace("categorical: [multiple_lines,", "categorical: [tenure, multiple_lines,")
    )
    outcome = materialize_all(project, instance)
    assert "column 'tenure' is declared as both numeric and categorical" in outcome.step_error("raw_data")
    assert_nothing_downstream(outcome, guarded, raw_kept=True)
