"""The drift report shows the scoring model's importance per column, computed once per model (keyed by
its manifest sha256) and kept in the artifact store, not computed again every night."""

from pathlib import Path

import dagster as dg
import pytest

from ml import io
from tests.assets.test_scoring_pipeline import DAY, materializations, setup_day


def rerun_drift_report(defs: dg.Definitions, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [defs.get_assets_def(k) for k in ("incoming_data", "batch_predictions", "drift_report")],
        selection=["drift_report"],
        partition_key=DAY,
        instance=instance,
        resources=dict(defs.resources),
    )


def test_the_importance_is_computed_once_per_model_and_read_back(trained_project: Path, monkeypatch):
    from ml.predictor import Predictor
    from resources import layout
    from resources.registry import MANIFEST_TAG

    defs, resources = setup_day(trained_project)
    registry, storage = resources["registry"], resources["storage"]
    sha = registry.version_info("telco_churn", 1)["tags"][MANIFEST_TAG]
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        assert defs.resolve_job_def("nightly_scoring").execute_in_process(instance=instance, partition_key=DAY).success
        kept = io.read_json(layout.model_importance(storage, "telco_churn", sha))
        expected = Predictor.load(registry.download("telco_churn", 1, trained_project / "v1")).column_importance()
        assert kept["manifest_sha256"] == sha
        assert kept["importance"] == pytest.approx(expected)
        first = materializations(instance, "drift_report")[0].asset_materialization.metadata
        shares = {r.data["column"]: r.data["importance"] for r in first["columns"].value.records}
        assert shares == pytest.approx({c: round(v, 4) for c, v in expected.items()}, abs=1e-4)

        def computed_again(*args, **kwargs):
            raise AssertionError("the drift report computed the importance again")

        monkeypatch.setattr(Predictor, "column_importance", computed_again)
        assert rerun_drift_report(defs, instance).success
        again = materializations(instance, "drift_report")[0].asset_materialization.metadata
        assert again["drift_share"].value == first["drift_share"].value
        assert again["columns"].value.records == first["columns"].value.records


def test_a_kept_importance_of_other_code_or_another_model_is_computed_again(trained_project: Path):
    from resources import layout
    from resources.registry import MANIFEST_TAG

    defs, resources = setup_day(trained_project)
    registry, storage = resources["registry"], resources["storage"]
    uri = layout.model_importance(storage, "telco_churn", registry.version_info("telco_churn", 1)["tags"][MANIFEST_TAG])
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as instance:
        assert defs.resolve_job_def("nightly_scoring").execute_in_process(instance=instance, partition_key=DAY).success
        good = io.read_json(uri)
        for stale in ({**good, "code": "older code"}, {**good, "manifest_sha256": "another model"}):
            io.write_json({**stale, "importance": {c: 0.0 for c in good["importance"]}}, uri)
            assert rerun_drift_report(defs, instance).success
            assert io.read_json(uri) == good
