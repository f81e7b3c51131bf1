"""The guard on a checked asset's materialization says why it refuses: failed checks with what failed,
a run still in progress (the same day launched twice), or an instance that cannot know (DAGSTER_HOME)."""

import dagster as dg
import pytest

from data_checks.asset_checks import data_check_results, require_passing_checks

DAY = "2026-10-01"
INCOMING = dg.AssetKey("incoming_data")


def record_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    run = dg.DagsterRun(job_name="nightly_scoring", status=status, tags={"dagster/partition": DAY})
    instance.add_run(run)
    return run.run_id


def test_a_run_still_materializing_the_day_is_named_not_called_a_failed_check():
    with dg.instance_for_test() as instance:
        running = record_run(instance, dg.DagsterRunStatus.STARTED)
        with pytest.raises(dg.Failure) as raised:
            require_passing_checks(instance, INCOMING, running, partition=DAY)
        assert raised.value.description == (
            f"incoming_data partition {DAY} is being materialized right now by run {running} (STARTED), whose data "
            "checks have not run yet: the same partition was launched twice at once. Wait for run "
            f"{running[:8]} to finish, then re-run this one"
        )


def test_a_finished_run_without_checks_is_refused_as_before():
    with dg.instance_for_test() as instance:
        done = record_run(instance, dg.DagsterRunStatus.FAILURE)
        with pytest.raises(dg.Failure, match=rf"\(schema: not run on the materialization of run {done[:8]};"):
            require_passing_checks(instance, INCOMING, done, partition=DAY)


def test_an_ephemeral_instance_says_dagster_home_is_unset(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(dg.Failure) as raised:
        require_passing_checks(instance, INCOMING, "0123456789abcdef", partition=DAY)
    assert raised.value.description.startswith(
        f"incoming_data partition {DAY}: no data checks of run 01234567 are known here; DAGSTER_HOME is unset, "
        "so this run uses an ephemeral Dagster instance, which knows no earlier run: set DAGSTER_HOME"
    )


def test_a_failed_data_check_carries_what_failed_in_its_description(spec, telco_raw):
    bad = telco_raw.head(50).copy()
    bad.loc[3, "monthly_charges"] = -12.5
    results = {
        r.check_name: r
        for r in data_check_results(dg.build_asset_context(), bad, spec, include_target=True, rows=spec.rows)
    }
    validity = results["validity"]
    assert not validity.passed
    assert validity.description.startswith("expect_column_values_to_be_between on column 'monthly_charges': 1 value")
    assert "-12.5" in validity.description
    assert results["schema"].passed and results["schema"].description is None


def test_checks_that_could_not_run_say_why_in_their_description(spec, telco_raw, tmp_path):
    """A day's file rewritten in place while its checks read it: every check fails, and the reason (which the
    run's failure and its alert show, from the descriptions) names the error, not only the check's name."""
    import pyarrow.parquet as pq

    path = tmp_path / "2026-10-01.parquet"
    telco_raw.drop(columns=[spec.target.column]).to_parquet(path, index=False, row_group_size=1000)
    with open(path, "rb") as handle, pq.ParquetFile(handle) as parquet:
        size = path.stat().st_size
        with open(path, "r+b") as writer:  # another writer, in place: same file, other bytes
            writer.write(b"\0" * size)
        results = list(
            data_check_results(
                dg.build_asset_context(), parquet, spec, include_target=False, rows=spec.rows, source=str(path)
            )
        )
    assert results and all(not r.passed for r in results)
    opening = f"the data checks could not run on {path} ("
    for result in results:
        assert result.description and result.description.startswith(opening), result
        assert result.description == result.metadata["error"].value.join([opening, ")"])
