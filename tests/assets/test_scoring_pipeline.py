"""The nightly assets on one day, in a trained project copy: checks, scoring, drift report, labels,
performance; and what a bad day leaves behind (nothing new, the previous good output untouched)."""

from pathlib import Path

import dagster as dg
import pandas as pd

from ml.predictions import part_uris, read_predictions
from tests.conftest import clear_daily_files, set_params

DAY = "2026-10-01"


def setup_day(project: Path) -> tuple[dg.Definitions, dict]:
    from ml.params import load_params
    from ml.simulate import simulate_day, write_labels, write_snapshot
    from orchestration.definitions import definitions
    from orchestration.deployments import local

    clear_daily_files(project)
    set_params(project, scoring={"min_rows_per_shard": 1})  # the day's 1,000 rows in two shards
    params = load_params(project / "params.yaml")
    daily = params.daily
    raw = pd.read_parquet(params.raw_uri)
    snapshot, labels = simulate_day(raw, params.dataset, params.simulation, 1)
    write_snapshot(snapshot, daily, 1, project)
    write_labels(labels, daily, 1, project)
    resources = local(project)
    return definitions(resources), resources


def contents(day_uri: str) -> list[bytes]:
    """The bytes of the day's part files, in order, as its manifest names them."""
    return [Path(uri).read_bytes() for uri in part_uris(day_uri)]


def materializations(instance, key: str) -> list:
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[DAY]), limit=100
    ).records


def test_a_day_is_checked_scored_reported_and_evaluated(trained_project: Path):
    from ml.predictor import Predictor
    from resources.registry import MANIFEST_TAG

    defs, resources = setup_day(trained_project)
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        nightly = defs.resolve_job_def("nightly_scoring").execute_in_process(instance=instance, partition_key=DAY)
        assert nightly.success
        checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in nightly.get_asset_check_evaluations()}
        assert checks == {
            **{("incoming_data", n): True for n in ("schema", "completeness", "validity", "uniqueness", "volume")},
            ("drift_report", "no_drift"): True,
        }

        scored = materializations(instance, "batch_predictions")[0].asset_materialization.metadata
        registry = resources["registry"]
        assert scored["model_version"].value == 1
        assert scored["model_manifest_sha256"].value == registry.version_info("telco_churn", 1)["tags"][MANIFEST_TAG]
        predictions = read_predictions(scored["predictions"].value)  # the day's manifest and its parts
        assert scored["shards"].value == 2 and len(part_uris(scored["predictions"].value)) == 2
        rows = pd.read_parquet(scored["rows_path"].value)
        assert list(predictions.columns) == ["customer_id", "score"]
        assert predictions["customer_id"].tolist() == rows["customer_id"].tolist()
        model = Predictor.load(registry.download("telco_churn", 1, trained_project / "v1"))
        assert (abs(predictions["score"].to_numpy() - model.predict(rows)) < 1e-12).all()  # training's feature code

        drift = materializations(instance, "drift_report")[0].asset_materialization.metadata
        assert drift["verdict"].value == "no drift" and drift["model_version"].value == 1
        assert len(drift["columns"].value.records) == 19
        assert "<html" in Path(drift["report"].value).read_text()[:2000].lower()

        feedback = defs.resolve_job_def("label_feedback").execute_in_process(instance=instance, partition_key=DAY)
        assert feedback.success
        performance = materializations(instance, "model_performance")[0].asset_materialization.metadata
        assert performance["roc_auc"].value > 0.8 and performance["model_version"].value == 1
        assert performance["labelled_rows"].value == len(rows)


def test_rescoring_is_identical_and_a_bad_day_keeps_the_good_predictions(trained_project: Path):
    defs, _ = setup_day(trained_project)
    job = defs.resolve_job_def("nightly_scoring")
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        assert job.execute_in_process(instance=instance, partition_key=DAY).success
        output = materializations(instance, "batch_predictions")[0].asset_materialization.metadata["predictions"].value
        manifest = Path(output) / "manifest.json"
        good, good_manifest = contents(output), manifest.read_bytes()
        assert job.execute_in_process(instance=instance, partition_key=DAY).success
        assert contents(output) == good  # same rows, same model: the same bytes in every part
        assert manifest.read_bytes() != good_manifest  # ...in the new run's own files
        good_manifest = manifest.read_bytes()

        incoming = trained_project / "data" / "incoming" / f"{DAY}.parquet"
        bad = pd.read_parquet(incoming)
        bad.loc[3, "monthly_charges"] = -12.5
        bad.to_parquet(incoming, index=False)
        failed = job.execute_in_process(instance=instance, partition_key=DAY, raise_on_error=False)
        assert not failed.success
        validity = [c for c in failed.get_asset_check_evaluations() if c.check_name == "validity"]
        assert validity and not validity[0].passed
        assert "monthly_charges" in str(validity[0].metadata["summary"].value)
        assert len(materializations(instance, "batch_predictions")) == 2  # no third scoring
        assert manifest.read_bytes() == good_manifest and contents(output) == good

        # Scoring on its own later refuses the day whose checks failed, naming it.
        alone = dg.materialize(
            [defs.get_assets_def("incoming_data"), defs.get_assets_def("batch_predictions")],
            selection=["batch_predictions"],
            partition_key=DAY,
            instance=instance,
            resources=dict(defs.resources),
            raise_on_error=False,
        )
        assert not alone.success
        assert manifest.read_bytes() == good_manifest and contents(output) == good


def test_scoring_without_a_champion_says_so(project: Path):
    set_params(project, registry={"model_name": "nobody"})
    defs, _ = setup_day(project)
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as instance:
        result = defs.resolve_job_def("nightly_scoring").execute_in_process(
            instance=instance, partition_key=DAY, raise_on_error=False
        )
        assert not result.success
        failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
        assert "nobody has no champion: run the train_model job first" in failure.event_specific_data.error.message


def test_a_drift_report_rerun_judges_the_checked_scored_version_not_a_replaced_file(trained_project: Path):
    """Replacing the day's file after scoring and re-running drift_report alone: the report is on the
    scorer's capture of the checked version, so an unchecked file never reaches a verdict."""
    defs, _ = setup_day(trained_project)
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        assert defs.resolve_job_def("nightly_scoring").execute_in_process(instance=instance, partition_key=DAY).success
        before = materializations(instance, "drift_report")[0].asset_materialization.metadata
        incoming = trained_project / "data" / "incoming" / f"{DAY}.parquet"
        replaced = pd.read_parquet(incoming)
        replaced["monthly_charges"] = replaced["monthly_charges"] * 3  # would be drift, were it read
        replaced.to_parquet(incoming, index=False)
        again = dg.materialize(
            [defs.get_assets_def(k) for k in ("incoming_data", "batch_predictions", "drift_report")],
            selection=["drift_report"],
            partition_key=DAY,
            instance=instance,
            resources=dict(defs.resources),
        )
        assert again.success
        after = materializations(instance, "drift_report")[0].asset_materialization.metadata
        assert after["verdict"].value == before["verdict"].value == "no drift"
        assert after["current_rows"].value == before["current_rows"].value


def test_a_day_with_money_as_decimals_is_checked_scored_and_drift_reported_as_its_numbers(trained_project: Path):
    """A day whose money columns are Parquet decimal128(10, 2), as warehouses export them, was refused by the
    schema check: "type is object, expected one of ['int8', ...]"."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ml.predictor import Predictor

    defs, resources = setup_day(trained_project)
    incoming = trained_project / "data" / "incoming" / f"{DAY}.parquet"
    rows = pd.read_parquet(incoming)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    for column in ("monthly_charges", "total_charges"):
        values = [None if pd.isna(v) else Decimal(f"{v:.2f}") for v in rows[column]]
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.decimal128(10, 2)))
        rows[column] = [float("nan") if v is None else float(v) for v in values]  # the numbers the file holds
    pq.write_table(table, incoming)
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        nightly = defs.resolve_job_def("nightly_scoring").execute_in_process(instance=instance, partition_key=DAY)
        assert nightly.success
        assert all(c.passed for c in nightly.get_asset_check_evaluations())
        scored = materializations(instance, "batch_predictions")[0].asset_materialization.metadata
        predictions = read_predictions(scored["predictions"].value)
        model = Predictor.load(resources["registry"].download("telco_churn", 1, trained_project / "v1"))
        assert (abs(predictions["score"].to_numpy() - model.predict(rows)) < 1e-12).all()
        capture = pq.read_schema(scored["capture"].value)
        assert capture.field("monthly_charges").type == pa.float64()
        drift = materializations(instance, "drift_report")[0].asset_materialization.metadata
        assert drift["model_version"].value == 1 and len(drift["columns"].value.records) == 19


def test_model_performance_judges_the_checked_labels_never_a_file_replaced_after_its_check(trained_project: Path):
    """Labels replaced after the labels step took them in (flipped: no check accepted them), then
    model_performance run alone, as the second step of the same run would: it refuses the unchecked
    file naming it, and the day's performance stays the checked one."""
    defs, _ = setup_day(trained_project)
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        assert defs.resolve_job_def("nightly_scoring").execute_in_process(instance=instance, partition_key=DAY).success
        assert defs.resolve_job_def("label_feedback").execute_in_process(instance=instance, partition_key=DAY).success
        before = materializations(instance, "model_performance")
        path = trained_project / "data" / "labels" / f"{DAY}.parquet"
        flipped = pd.read_parquet(path)
        flipped["churn"] = flipped["churn"].map({"Yes": "No", "No": "Yes"})
        flipped.to_parquet(path, index=False)
        again = dg.materialize(
            [defs.get_assets_def(k) for k in ("incoming_data", "batch_predictions", "labels", "model_performance")],
            selection=["model_performance"],
            partition_key=DAY,
            instance=instance,
            resources=dict(defs.resources),
            raise_on_error=False,
        )
        assert not again.success
        failure = next(e for e in again.all_events if e.is_step_failure).step_failure_data.user_failure_data
        assert str(path) in failure.description and "not the version" in failure.description
        after = materializations(instance, "model_performance")
        assert len(after) == len(before) == 1
        assert after[0].asset_materialization.metadata["roc_auc"].value > 0.8
