"""The code location as users meet it: loadable, described, resources chosen by one variable."""

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from orchestration import deployments
from orchestration.definitions import defs
from resources.dvc import DvcResource
from tests.conftest import REPO


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


LIFECYCLE_GROUPS = {"data", "training", "registry", "scoring", "monitoring", "serving"}


def test_every_asset_is_described_grouped_owned_and_kinded():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 40, name
        assert node.group_name in LIFECYCLE_GROUPS, name
        assert node.owners == ["team:ml-platform"], name
        assert node.kinds, name
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == LIFECYCLE_GROUPS
    kinds = set().union(*(graph.get(key).kinds for key in graph.get_all_asset_keys()))
    assert {"dvc", "great_expectations", "lightgbm", "mlflow", "evidently"} <= kinds  # the tools, as the UI tags them


def test_every_check_job_schedule_and_sensor_says_what_it_does():
    graph = defs.resolve_asset_graph()
    checks = [graph.get_check_spec(key) for key in graph.asset_check_keys]
    assert len(checks) >= 13  # five per checked data asset, the gate, the two monitoring warnings
    for spec in checks:
        assert spec.description and len(spec.description) > 30, spec.key
    for job in defs.jobs:
        assert job.description and len(job.description) > 30, job.name
    (schedule,) = defs.schedules
    assert "02:00" in schedule.description and "previous day" in schedule.description
    for sensor in defs.sensors:  # when they tick and what they launch (the alert sensors launch nothing)
        assert sensor.description.startswith("Every "), sensor.name
        if sensor.targets:
            assert f"{sensor.job_name} job" in sensor.description, sensor.name
        elif sensor.name != "fail_dead_runs":  # housekeeping: fails runs whose process is gone
            assert "KEEL_ALERT_WEBHOOK_URL" in sensor.description, sensor.name


def test_prepare_data_job_runs_the_blocking_checks():
    job = defs.resolve_job_def("prepare_data")
    graph = defs.resolve_asset_graph()
    selected = job.asset_layer.selected_asset_keys
    assert selected == {dg.AssetKey("raw_data"), dg.AssetKey("training_set"), dg.AssetKey("features")}
    checks = job.asset_layer.asset_graph.asset_check_keys
    assert {c.name for c in checks if c.asset_key == dg.AssetKey("raw_data")} == {
        "schema",
        "completeness",
        "validity",
        "uniqueness",
        "volume",
    }
    assert all(graph.get_check_spec(c).blocking for c in checks)


def test_local_deployment_is_the_default(monkeypatch):
    monkeypatch.delenv(deployments.DEPLOYMENT_VARIABLE, raising=False)
    resources = deployments.resources_for()
    assert isinstance(resources["dvc"], DvcResource)
    assert Path(resources["dvc"].repo_dir) == REPO
    assert resources["storage"].root == str(REPO / "var" / "storage")


def test_unknown_deployment_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv(deployments.DEPLOYMENT_VARIABLE, "mainframe")
    with pytest.raises(
        ValueError, match=r"KEEL_DEPLOYMENT='mainframe' is not a known deployment; known deployments: (\w+, )*local"
    ):
        deployments.resources_for()


def imported_modules(folder: str) -> set[str]:
    found = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_ml_core_is_framework_free():
    assert not imported_modules("ml") & {"dagster", "assets", "resources", "orchestration", "data_checks", "demo"}


def test_every_folder_imports_only_the_rooms_it_may():
    """The rooms of the design card: a line of code knows its room by what it may import."""
    project = {"ml", "assets", "resources", "data_checks", "orchestration", "demo", "benchmarks", "tests"}
    allowed = {
        "resources": {"ml", "resources"},
        "data_checks": {"ml", "data_checks"},
        "assets": {"ml", "resources", "data_checks", "assets"},
        "orchestration": {"ml", "resources", "data_checks", "assets", "orchestration"},  # never the demo
    }
    for folder, rooms in allowed.items():
        assert imported_modules(folder) & project <= rooms, folder


def test_the_lineage_runs_from_raw_data_through_features_to_the_registered_model():
    graph = defs.resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {key.to_user_string() for key in graph.get(dg.AssetKey(name)).parent_keys}

    assert "raw_data" in parents("training_set")
    assert parents("features") == {"training_set"}
    assert parents("candidate_model") == {"features"}
    assert parents("registered_model") == {"candidate_model"}


def test_assets_take_their_upstream_as_arguments_not_from_the_instance():
    """No asset finds its input by reading another asset's latest materialization back from the instance."""
    sources = {path.name: path.read_text() for path in (REPO / "assets").glob("*.py")}
    for name, text in sources.items():
        for lookup in ("get_latest_materialization_event", "fetch_materializations", "latest_metadata"):
            assert lookup not in text, f"assets/{name} uses {lookup}"
    graph = defs.resolve_asset_graph()
    # Every upstream is a parameter of the function, except the labelled days training_set picks by config.
    for key in graph.get_all_asset_keys():
        parameters = set(inspect.signature(defs.get_assets_def(key).op.compute_fn.decorated_fn).parameters)
        upstream = {parent.to_user_string() for parent in graph.get(key).parent_keys}
        if key.to_user_string() == "training_set":
            upstream -= {"incoming_data", "labels"}
        assert upstream <= parameters, key.to_user_string()
    from assets.evaluation_gate import evaluation_gate

    assert "candidate_model" in inspect.signature(evaluation_gate.node_def.compute_fn.decorated_fn).parameters


def test_loading_the_code_location_does_not_import_great_expectations():
    # GX takes ~9 s to import; it is loaded when checks run, not when the UI loads the definitions.
    code = "import sys, orchestration.definitions; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_model_job_runs_the_whole_training_lifecycle_behind_blocking_checks():
    job = defs.resolve_job_def("train_model")
    keys = {"raw_data", "training_set", "features", "candidate_model", "registered_model"}
    assert job.asset_layer.selected_asset_keys == {dg.AssetKey(k) for k in keys}
    graph = defs.resolve_asset_graph()
    gate = dg.AssetCheckKey(dg.AssetKey("candidate_model"), "evaluation_gate")
    assert gate in job.asset_layer.asset_graph.asset_check_keys and graph.get_check_spec(gate).blocking
    for name in ("approve", "rollback"):
        assert defs.resolve_job_def(name).description


def test_no_code_pickles_models_or_data():
    # Model artifacts are text/JSON and data is Parquet; loading must never execute stored code.
    code_folders = ["ml", "assets", "resources", "orchestration", "data_checks"]
    imported = set().union(*(imported_modules(folder) for folder in code_folders))
    assert not imported & {"pickle", "cloudpickle", "dill", "joblib", "skops"}
    sources = "\n".join(p.read_text() for folder in code_folders for p in (REPO / folder).rglob("*.py"))
    for flavour in ("mlflow.sklearn", "mlflow.lightgbm", "mlflow.pyfunc", "PickleIOManager"):
        assert flavour not in sources, flavour


@pytest.mark.parametrize(
    ("job", "example"),
    [("approve", "approve.yaml"), ("rollback", "rollback.yaml"), ("train_model", "train_logistic_regression.yaml")],
)
def test_example_run_configs_are_valid_for_their_jobs(job, example):
    import yaml

    config = yaml.safe_load((REPO / "docs" / "examples" / example).read_text())
    dg.validate_run_config(defs.resolve_job_def(job), config)


def test_the_nightly_schedule_scores_yesterday_at_two_and_no_schedule_trains():
    schedules = list(defs.schedules)
    assert [s.name for s in schedules] == ["nightly_scoring_schedule"]
    schedule = defs.resolve_schedule_def("nightly_scoring_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.description
    job = defs.resolve_job_def(schedule.job_name)
    assert job.asset_layer.selected_asset_keys == {
        dg.AssetKey(k) for k in ("incoming_data", "batch_predictions", "drift_report")
    }
    assert isinstance(job.partitions_def, dg.DailyPartitionsDefinition)
    # Retraining follows drift: the training assets are launched by a sensor, never by a calendar.
    training = {dg.AssetKey(k) for k in ("training_set", "features", "candidate_model", "registered_model")}
    for s in schedules:
        assert not defs.resolve_job_def(s.job_name).asset_layer.selected_asset_keys & training
    retrain = defs.resolve_sensor_def("retrain_on_drift")
    assert retrain.job_name == "retrain" and retrain.description


def test_every_partitioned_day_is_checked_by_blocking_partitioned_data_checks():
    graph = defs.resolve_asset_graph()
    keys = [c for c in graph.asset_check_keys if c.asset_key == dg.AssetKey("incoming_data")]
    assert {c.name for c in keys} == {"schema", "completeness", "validity", "uniqueness", "volume"}
    for key in keys:
        spec = graph.get_check_spec(key)
        assert spec.blocking and isinstance(spec.partitions_def, dg.DailyPartitionsDefinition)
    drift = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("drift_report"), "no_drift"))
    assert not drift.blocking  # drift warns; the sensor acts on it
