"""Shared fixtures: the shipped spec and data, and throw-away copies of the project for DVC / Dagster runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from ml.example_data import example_frame
from ml.ingest import with_ids
from ml.params import load_params
from ml.spec import DatasetSpec

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="session")
def spec() -> DatasetSpec:
    return load_params(REPO / "params.yaml").dataset


@pytest.fixture(scope="session")
def telco_source() -> pd.DataFrame:
    """The example data set as its source file holds it (no id column)."""
    return example_frame("telco_churn")


@pytest.fixture(scope="session")
def telco_raw(spec: DatasetSpec, telco_source: pd.DataFrame) -> pd.DataFrame:
    """The example data set as the import writes it (generated ids, text columns as text)."""
    from ml.sources import as_text

    frame = with_ids(telco_source, spec)
    for col in spec.text_columns:
        frame[col] = as_text(frame[col])
    return frame


def run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a command with the project's interpreter first on PATH (DVC stages call `python`)."""
    full_env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check)


def write_dagster_home(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "orchestration" / "dagster.yaml", path / "dagster.yaml")
    return path


def _copy_project(dest: Path) -> Path:
    """Copy the project's files (tracked and new, not ignored) into a fresh git + DVC repo."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    run(["git", "init", "-q"], cwd=dest)
    run(["git", "add", "-A"], cwd=dest)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "copy"], cwd=dest)
    return dest


@pytest.fixture(scope="session")
def project_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project where `dvc repro` has run and `prepare_data` has succeeded once."""
    from assets.features import features
    from assets.raw_data import raw_data
    from assets.training_set import training_set
    from orchestration.deployments import local

    root = _copy_project(tmp_path_factory.mktemp("template") / "project")
    dvc("repro", cwd=root)
    home = write_dagster_home(root / "var" / "dagster")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize([raw_data, training_set, features], resources=local(root), instance=instance)
        assert result.success
    return root


@pytest.fixture
def project(project_template: Path, tmp_path: Path) -> Path:
    """A private copy of the template (git history, DVC cache, data, Dagster history, artifacts)."""
    dest = tmp_path / "project"
    shutil.copytree(project_template, dest, symlinks=True)
    return dest


@pytest.fixture
def instance(project: Path) -> Iterator[dg.DagsterInstance]:
    """The project copy's Dagster instance (SQLite in var/dagster), with the good run's history."""
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as inst:
        yield inst


def lock_md5(project: Path, stage: str = "import_raw") -> str:
    """The md5 that the copy's dvc.lock records for the stage's (first) output."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return lock["stages"][stage]["outs"][0]["md5"]


def set_params(project: Path, **sections: dict) -> None:
    """Merge values into sections of the copy's params.yaml (e.g. dataset={"source": {...}})."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        _merge(params.setdefault(section, {}), values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def clear_daily_files(project: Path) -> None:
    """`dvc repro` in the template simulated every day at once; stories and single days deliver their own."""
    for folder in ("incoming", "labels"):
        shutil.rmtree(project / "data" / folder, ignore_errors=True)


def _merge(into: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.fixture(scope="session")
def training_inputs(tmp_path_factory: pytest.TempPathFactory, spec: DatasetSpec, telco_raw: pd.DataFrame) -> dict:
    """The Telco training table, feature state and training config as files, as training_set writes them."""
    from ml.io import write_json
    from ml.params import load_params
    from ml.split import HOLDOUT, side, split_rows, training_features

    params = load_params(REPO / "params.yaml")
    config = params.training.resolve()
    folder = tmp_path_factory.mktemp("training_inputs")
    rows = split_rows(telco_raw, spec, fraction=config.holdout_fraction, seed=config.seed)
    table, state = training_features(rows, spec, params.features)
    table.to_parquet(folder / "features.parquet", index=False)
    write_json(state.to_dict(), str(folder / "state.json"))
    write_json(config.to_dict(), str(folder / "config.json"))
    return {
        "features": str(folder / "features.parquet"),
        "state": str(folder / "state.json"),
        "config": str(folder / "config.json"),
        "training_config": config,
        "params": params,
        "holdout": side(rows, HOLDOUT),
    }


def training_assets() -> list:
    """Everything a training run needs, as the train_model job selects it (checks included)."""
    from assets.candidate_model import candidate_model
    from assets.evaluation_gate import evaluation_gate
    from assets.features import features
    from assets.raw_data import raw_data
    from assets.registered_model import registered_model
    from assets.training_set import training_set

    return [raw_data, training_set, features, candidate_model, evaluation_gate, registered_model]


def train(
    project: Path,
    instance: dg.DagsterInstance,
    run_config: dict | None = None,
    from_raw_data: bool = False,
    **resources,
):
    """One training run (training set -> features -> candidate -> gate -> registration) in a project copy.

    `from_raw_data`: also import and check the raw data, as the train_model job does; a deployment whose
    store does not hold the local runs' records (a cloud one) needs it.
    """
    from assets.candidate_model import candidate_model
    from assets.features import features
    from assets.raw_data import raw_data
    from assets.registered_model import registered_model
    from assets.training_set import training_set
    from orchestration.deployments import local

    return dg.materialize(
        training_assets(),
        selection=[*([raw_data] if from_raw_data else []), training_set, features, candidate_model, registered_model],
        resources={**local(project), **resources},
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
    )


def relocate_mlflow(project: Path, old_root: Path) -> None:
    """Point a copied MLflow SQLite store at the copy's artifact folder (MLflow stores absolute URIs)."""
    import sqlite3

    store = project / "var" / "mlflow" / "mlflow.db"
    if not store.exists():
        return
    with sqlite3.connect(store) as db:
        for table, column in [
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("model_versions", "source"),
            ("model_versions", "storage_location"),
        ]:
            db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (str(old_root), str(project)))


@pytest.fixture(scope="session")
def trained_template(project_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project template after one good training run: champion v1 in its MLflow registry."""
    root = tmp_path_factory.mktemp("trained") / "project"
    shutil.copytree(project_template, root, symlinks=True)
    relocate_mlflow(root, project_template)
    with dg.DagsterInstance.from_config(str(root / "var" / "dagster")) as instance:
        assert train(root, instance).success
    return root


@pytest.fixture
def trained_project(trained_template: Path, tmp_path: Path) -> Path:
    """A private copy of the trained template, its MLflow store pointed at the copy."""
    dest = tmp_path / "project"
    shutil.copytree(trained_template, dest, symlinks=True)
    relocate_mlflow(dest, trained_template)
    return dest


@pytest.fixture(scope="session", autouse=True)
def _compiled_models_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Models compiled by tests (ml/compiled.py) go to a throw-away cache, not the user's."""
    previous = os.environ.get("KEEL_COMPILED_CACHE")
    os.environ["KEEL_COMPILED_CACHE"] = str(tmp_path_factory.mktemp("compiled_cache"))
    yield
    if previous is None:
        os.environ.pop("KEEL_COMPILED_CACHE", None)
    else:
        os.environ["KEEL_COMPILED_CACHE"] = previous


@pytest.fixture(scope="session", autouse=True)
def _one_definitions_load_context():
    """Definitions resolved in this process read the current instance's definitions-state store unless a
    load context is set; the project has no state-backed definitions, so one context without state,
    made before any instance exists, serves every test (and no test reads another's closed instance)."""
    from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType

    DefinitionsLoadContext.set(DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION))
    yield


@pytest.fixture(autouse=True)
def _forget_the_instance_a_test_left_current():
    """A Dagster instance entered by a test and closed out of order stays the process's current
    definitions-state store (a context variable); a later test's ephemeral run then reads the
    removed temporary instance ("unable to open database file"). Each test starts without one."""
    yield
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
