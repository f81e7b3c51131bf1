"""ModelRegistry on real MLflow SQLite stores: tracking, registration, compare-and-set alias moves, verified downloads.

Creating an MLflow SQLite store runs its migrations (seconds), so most tests share one store per module
and each uses its own model name; no test depends on another's state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
import pytest
from filelock import FileLock
from mlflow.exceptions import MlflowException

from ml.artifact import MANIFEST, ArtifactIntegrityError, manifest_sha256, write_manifest
from resources.registry import AliasConflict, ModelRegistry, RegistryUnavailable, UnusableVersion

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> ModelRegistry:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        root = tmp_path_factory.mktemp("mlflow")
        # Pin the URI the default resolves to, so a test that sets MLFLOW_TRACKING_URI cannot redirect this store.
        yield ModelRegistry(root=str(root), tracking_uri=ModelRegistry(root=str(root)).uri())


@pytest.fixture
def name(request) -> str:
    """A model name of this test's own."""
    return request.node.name.replace("[", "-").replace("]", "")


def make_artifact(directory: Path, seed: str = "a") -> Path:
    directory.mkdir(parents=True)
    (directory / "model.json").write_text(json.dumps({"trees": [seed] * 50}), encoding="utf-8")
    (directory / "metrics.json").write_text(json.dumps({"auc": 0.81}), encoding="utf-8")
    write_manifest(directory, {"model": seed})
    return directory


def train(registry: ModelRegistry, name: str, tmp_path: Path, count: int) -> list[int]:
    """Log and register `count` versions of `name`; return their numbers."""
    versions = []
    for n in range(count):
        artifact = make_artifact(tmp_path / f"{name}-{n}", seed=str(n))
        run_id = registry.log_training_run(name, f"run-{n}", {"n": n}, {"auc": 0.8}, {}, artifact)
        versions.append(registry.register(name, run_id, {"manifest_sha256": manifest_sha256(artifact)}))
    return versions


def stored_artifact(registry: ModelRegistry, name: str, version: int) -> Path:
    """The model directory inside the tracking store's artifact folder."""
    return Path(url2pathname(urlparse(registry.version_info(name, version)["source"]).path))


# --- tracking -------------------------------------------------------------------------------
def test_training_run_is_visible_through_mlflow(registry, name, tmp_path):
    artifact = make_artifact(tmp_path / "model")
    params = {"learning_rate": 0.05, "features": ["a", "b"], "long": "x" * 7000}
    run_id = registry.log_training_run(name, "train", params, {"auc": 0.81, "rows": 100}, {"data": "md5:1"}, artifact)

    run = mlflow.MlflowClient(registry.uri()).get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "train"
    assert run.data.params["learning_rate"] == "0.05" and run.data.params["features"] == "['a', 'b']"
    assert len(run.data.params["long"]) == 6000 and run.data.params["long"].endswith("[truncated]")
    assert run.data.metrics == {"auc": 0.81, "rows": 100.0} and run.data.tags["data"] == "md5:1"
    listed = mlflow.MlflowClient(registry.uri()).list_artifacts(run_id, "model")
    assert sorted(Path(f.path).name for f in listed) == ["manifest.json", "metrics.json", "model.json"]
    # Artifacts land under root, never in the current directory.
    assert run.info.artifact_uri.startswith(Path(registry.root, "artifacts").as_uri())

    registry.set_run_tags(run_id, {"approved_by": "ana"})
    assert mlflow.MlflowClient(registry.uri()).get_run(run_id).data.tags["approved_by"] == "ana"


def test_a_run_that_fails_midway_is_marked_failed(registry, name, tmp_path):
    with pytest.raises(ValueError):
        registry.log_training_run(name, "broken", {}, {"auc": "not a number"}, {}, make_artifact(tmp_path / "m"))
    client = mlflow.MlflowClient(registry.uri())
    [run] = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert run.info.status == "FAILED"


def test_tracking_uri_environment_variable_overrides_the_default(tmp_path, monkeypatch):
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    registry = ModelRegistry(root=str(tmp_path / "root"))
    assert registry.uri() == elsewhere
    run_id = registry.log_training_run("exp", "r", {}, {}, {}, make_artifact(tmp_path / "m"))
    assert mlflow.MlflowClient(elsewhere).get_run(run_id).info.status == "FINISHED"
    assert not (tmp_path / "root" / "mlflow.db").exists()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert registry.uri() == f"sqlite:///{(tmp_path / 'root' / 'mlflow.db').resolve()}"


# --- registration ---------------------------------------------------------------------------
def test_register_creates_numbered_versions_with_lineage_tags(registry, name, tmp_path):
    artifact = make_artifact(tmp_path / "m")
    run_id = registry.log_training_run(name, "r", {}, {}, {}, artifact)
    lineage = {"manifest_sha256": manifest_sha256(artifact), "data_version": "md5:9", "code_version": "abc"}
    assert registry.register(name, run_id, lineage, description="first") == 1
    assert registry.register(name, run_id, lineage) == 2
    assert registry.versions(name) == [1, 2] and registry.versions("no-such-model") == []
    assert registry.version_for_run(name, run_id) == 1 and registry.version_for_run(name, "0" * 32) is None

    info = registry.version_info(name, 1)
    assert info["run_id"] == run_id and info["source"].endswith(f"{run_id}/artifacts/model")
    assert lineage.items() <= info["tags"].items() and info["description"] == "first" and info["aliases"] == []

    with pytest.raises(ValueError, match="must include 'manifest_sha256'"):
        registry.register(name, run_id, {"data_version": "md5:9"})
    with pytest.raises(UnusableVersion, match=r"manifest\.json: sha256 .* does not match .*nothing was registered"):
        registry.register(name, run_id, {"manifest_sha256": "0" * 64})
    assert registry.versions(name) == [1, 2]


def run_artifact(registry: ModelRegistry, run_id: str) -> Path:
    """The `model` folder a run logged, inside the tracking store's artifact folder."""
    uri = mlflow.MlflowClient(registry.uri()).get_run(run_id).info.artifact_uri
    return Path(url2pathname(urlparse(uri).path)) / "model"


def test_register_verifies_every_file_the_run_logged(registry, name, tmp_path):
    artifact = make_artifact(tmp_path / "m")
    run_id = registry.log_training_run(name, "r", {}, {}, {}, artifact)
    lineage = {"manifest_sha256": manifest_sha256(artifact)}
    # The copy that was graded is intact; MLflow's copy has one byte changed (its manifest is untouched).
    flip_byte(run_artifact(registry, run_id))
    with pytest.raises(
        UnusableVersion, match=rf"run {run_id}: .*artifacts/model/model\.json: sha256 .* does not match"
    ):
        registry.register(name, run_id, lineage)
    assert registry.versions(name) == []


def test_register_refuses_an_artifact_that_does_not_load(registry, name, tmp_path):
    artifact = make_artifact(tmp_path / "m")
    run_id = registry.log_training_run(name, "r", {}, {}, {}, artifact)

    def unparseable(directory: Path) -> None:
        raise ValueError(f"{directory / 'model.json'}: not a model this version of the code can read")

    with pytest.raises(UnusableVersion, match=r"model\.json: not a model .*nothing was registered"):
        registry.register(name, run_id, {"manifest_sha256": manifest_sha256(artifact)}, load=unparseable)
    assert registry.versions(name) == []
    loaded = []  # what the loader was given: the downloaded copy, every file present
    lineage = {"manifest_sha256": manifest_sha256(artifact)}
    assert (
        registry.register(name, run_id, lineage, load=lambda d: loaded.append(sorted(p.name for p in d.iterdir()))) == 1
    )
    assert loaded == [["manifest.json", "metrics.json", "model.json"]]


# --- alias moves ----------------------------------------------------------------------------
def test_move_alias_is_compare_and_set(registry, name, tmp_path):
    train(registry, name, tmp_path, 3)
    assert registry.alias_version(name, "champion") is None and registry.alias_version("no-such", "champion") is None
    registry.move_alias(name, "champion", 1, expected_from=None, reason="first", actor="ci")
    move = registry.move_alias(name, "champion", 2, expected_from=1, reason="better auc", actor="ana", kind="approve")
    assert (move.from_version, move.to_version, move.kind) == (1, 2, "approve")
    assert registry.alias_version(name, "champion") == 2

    with pytest.raises(AliasConflict, match=r"from v1 to v3: it points to v2 now \(moved .* by ana: better auc\)"):
        registry.move_alias(name, "champion", 3, expected_from=1, reason="stale", actor="bob")
    with pytest.raises(ValueError, match="has no version 9"):
        registry.move_alias(name, "champion", 9, expected_from=2, reason="typo", actor="bob")
    with pytest.raises(ValueError, match="already points to v2"):
        registry.move_alias(name, "champion", 2, expected_from=2, reason="again", actor="bob")
    assert registry.alias_version(name, "champion") == 2 and len(registry.alias_history(name)) == 2

    assert registry.version_info(name, 2)["aliases"] == ["champion"]
    assert registry.version_info(name, 2)["tags"]["keel.champion.since"] == move.when
    assert "keel.champion.since" not in registry.version_info(name, 1)["tags"]

    registry.delete_alias(name, "champion")
    registry.delete_alias(name, "champion")  # already gone: a no-op
    assert registry.alias_version(name, "champion") is None
    assert "keel.champion.since" not in registry.version_info(name, 2)["tags"]


def test_history_is_recorded_as_registered_model_tags(registry, name, tmp_path):
    train(registry, name, tmp_path, 2)
    registry.move_alias(name, "champion", 1, None, reason="first", actor="ci", dagster_run_id="run-1")
    registry.move_alias(name, "challenger", 2, None, reason="try it", actor="ana")
    registry.move_alias(name, "champion", 2, 1, reason="won", actor="ana", dagster_run_id="run-2")

    tags = mlflow.MlflowClient(registry.uri()).get_registered_model(name).tags
    moves = {key: json.loads(value) for key, value in tags.items() if key.startswith("keel.alias_move.")}
    assert sorted(moves) == ["keel.alias_move.000001", "keel.alias_move.000002", "keel.alias_move.000003"]
    assert moves["keel.alias_move.000003"] | {"when": None} == {
        "when": None,
        "model": name,
        "alias": "champion",
        "from_version": 1,
        "to_version": 2,
        "reason": "won",
        "actor": "ana",
        "dagster_run_id": "run-2",
        "kind": "promote",
    }
    history = registry.alias_history(name, "champion")
    assert [(m.from_version, m.to_version, m.reason) for m in history] == [(None, 1, "first"), (1, 2, "won")]
    assert history[0].when < history[1].when and history[1].to_dict() == moves["keel.alias_move.000003"]
    assert [m.alias for m in registry.alias_history(name)] == ["champion", "challenger", "champion"]


def test_rollback_target_unwinds_the_history_like_a_stack(registry, name, tmp_path):
    train(registry, name, tmp_path, 3)
    assert registry.rollback_target(name) is None
    for previous, version in [(None, 1), (1, 2), (2, 3)]:
        registry.move_alias(name, "champion", version, previous, reason=f"v{version}", actor="ci")
    assert registry.rollback_target(name) == 2
    registry.move_alias(name, "champion", 2, 3, reason="v3 misbehaves", actor="ana", kind="rollback")
    assert registry.rollback_target(name) == 1
    registry.move_alias(name, "champion", 1, 2, reason="v2 too", actor="ana", kind="rollback")
    assert registry.rollback_target(name) is None and registry.alias_version(name, "champion") == 1


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from resources.registry import AliasConflict, ModelRegistry

    root, uri, name, to_version, barrier, me = sys.argv[1:]
    registry = ModelRegistry(root=root, tracking_uri=uri)
    seen = registry.alias_version(name, "champion")
    Path(barrier, me).write_text(str(seen))
    deadline = time.monotonic() + 120
    while len(list(Path(barrier).iterdir())) < 2 and time.monotonic() < deadline:  # both have read: go
        time.sleep(0.005)
    try:
        registry.move_alias(name, "champion", int(to_version), seen, reason=f"race {me}", actor=me)
        print("won")
    except AliasConflict as error:
        print(f"conflict: {error}")
    """
)


def test_racing_promotions_from_the_same_champion_one_wins(registry, name, tmp_path):
    train(registry, name, tmp_path, 3)
    registry.move_alias(name, "champion", 1, None, reason="first", actor="ci")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = {
        me: subprocess.Popen(
            [sys.executable, "-c", RACER, registry.root, registry.uri(), name, str(version), str(barrier), me],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, version in [("a", 2), ("b", 3)]
    }
    results = {}
    for me, proc in racers.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        results[me] = out.strip().splitlines()[-1]
    assert (barrier / "a").read_text() == (barrier / "b").read_text() == "1"  # both read v1 before either moved

    [winner] = [me for me, result in results.items() if result == "won"]
    [loser] = [me for me, result in results.items() if result.startswith("conflict:")]
    won_version = {"a": 2, "b": 3}[winner]
    assert f"it points to v{won_version} now" in results[loser] and f"by {winner}: race {winner}" in results[loser]
    assert registry.alias_version(name, "champion") == won_version
    assert [m.actor for m in registry.alias_history(name, "champion")] == ["ci", winner]


def test_an_alias_moves_only_to_a_version_that_downloads_verifies_and_loads(registry, name, tmp_path):
    train(registry, name, tmp_path, 4)
    registry.move_alias(name, "champion", 4, None, reason="first", actor="ci")
    shutil.rmtree(stored_artifact(registry, name, 1))  # gone from the artifact store
    flip_byte(stored_artifact(registry, name, 2))  # modified in place

    def refuses(directory: Path) -> None:
        raise RuntimeError("lightgbm: unknown model format")

    expected = {
        1: (
            None,
            rf"'champion' was not moved to v1: model '{name}' v1: its artifact cannot be downloaded from .*No such artifact",
        ),
        2: (None, rf"'champion' was not moved to v2: model '{name}' v2: .*model\.json: sha256 .* does not match"),
        3: (refuses, rf"model '{name}' v3: its artifact verifies but does not load \(RuntimeError: lightgbm"),
    }
    for version, (load, message) in expected.items():
        with pytest.raises(UnusableVersion, match=message):
            registry.move_alias(name, "champion", version, 4, reason="back", actor="ana", kind="rollback", load=load)
    assert registry.alias_version(name, "champion") == 4 and len(registry.alias_history(name)) == 1
    registry.move_alias(
        name, "champion", 3, 4, reason="loads", actor="ana", load=lambda d: (d / "model.json").read_text()
    )
    assert registry.alias_version(name, "champion") == 3


def test_a_locked_or_corrupt_database_is_named_with_what_to_do(tmp_path):
    import sqlite3

    registry = ModelRegistry(root=str(tmp_path / "root"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert registry.versions("m") == []  # creates the store
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process mid-write (MLflow waits 20 s for it, then gives up)
    try:
        with pytest.raises(RegistryUnavailable, match=rf"MLflow database {tmp_path / 'mlflow.db'} is locked .*wait"):
            registry.alias_version("m", "champion")
    finally:
        holder.rollback()
        holder.close()

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 200)
    broken = ModelRegistry(root=str(tmp_path / "root"), tracking_uri=f"sqlite:///{corrupt}")
    with pytest.raises(
        RegistryUnavailable, match=rf"MLflow database {corrupt} is not a readable .*restore it from a backup"
    ):
        broken.alias_version("m", "champion")


def test_a_database_moved_away_is_named_and_not_replaced_by_an_empty_registry(tmp_path):
    database = tmp_path / "root" / "mlflow.db"
    registry = ModelRegistry(root=str(tmp_path / "root"), tracking_uri=f"sqlite:///{database}")
    [version] = train(registry, "m", tmp_path, 1)
    registry.reconnect()
    database.rename(tmp_path / "mlflow.db.aside")  # moved during the night
    fresh = ModelRegistry(root=str(tmp_path / "root"), tracking_uri=f"sqlite:///{database}")
    with pytest.raises(RegistryUnavailable, match=rf"MLflow database {database} does not exist, but .* Put it back"):
        fresh.alias_version("m", "champion")
    assert not database.exists()  # no empty registry took its place
    (tmp_path / "mlflow.db.aside").rename(database)
    assert fresh.versions("m") == [version]  # put back, it is the registry it was


def test_a_held_lock_times_out_with_a_clear_error(registry, name, tmp_path):
    train(registry, name, tmp_path, 1)
    impatient = ModelRegistry(root=registry.root, tracking_uri=registry.uri(), lock_timeout=0.2)
    with (
        FileLock(Path(registry.root, "locks", f"{name}.aliases.lock")),
        pytest.raises(TimeoutError, match="could not lock"),
    ):
        impatient.move_alias(name, "champion", 1, None, reason="r", actor="a")
    assert registry.alias_version(name, "champion") is None


# --- download -------------------------------------------------------------------------------
def test_download_returns_a_verified_copy(registry, name, tmp_path):
    [version] = train(registry, name, tmp_path, 1)
    local = registry.download(name, version)
    assert sorted(p.name for p in local.iterdir()) == ["manifest.json", "metrics.json", "model.json"]
    assert local != stored_artifact(registry, name, version)
    dest = registry.download(name, version, dest=tmp_path / "dest" / "model")
    assert (
        dest == tmp_path / "dest" / "model" and (dest / "model.json").read_text() == (local / "model.json").read_text()
    )
    with pytest.raises(FileExistsError, match="not empty"):
        registry.download(name, version, dest=dest)
    shutil.rmtree(local.parent)  # the caller owns a download without dest


def flip_byte(stored: Path) -> None:
    data = bytearray((stored / "model.json").read_bytes())
    data[10] ^= 0x01
    (stored / "model.json").write_bytes(bytes(data))


def truncate(stored: Path) -> None:
    (stored / "model.json").write_bytes((stored / "model.json").read_bytes()[:-5])


def replace_consistently(stored: Path) -> None:
    # A different model whose manifest is itself correct: only the registered hash can catch it.
    (stored / "model.json").write_text(json.dumps({"trees": ["evil"]}), encoding="utf-8")
    (stored / MANIFEST).unlink()
    write_manifest(stored, {"model": "a"})


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (flip_byte, r"model\.json: sha256 .* does not match the manifest"),
        (truncate, r"model\.json: \d+ bytes, the manifest says \d+"),
        (replace_consistently, r"manifest\.json: sha256 .* does not match the registered"),
    ],
    ids=["flipped-byte", "truncated", "replaced-consistently"],
)
def test_download_refuses_a_tampered_artifact(registry, name, tmp_path, tamper, message):
    [version] = train(registry, name, tmp_path, 1)
    tamper(stored_artifact(registry, name, version))
    with pytest.raises(ArtifactIntegrityError, match=rf"^model '{name}' v{version}: .*{message}"):
        registry.download(name, version, dest=tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_download_refuses_a_version_without_a_manifest_hash(registry, name, tmp_path):
    [version] = train(registry, name, tmp_path, 1)
    client = mlflow.MlflowClient(registry.uri(), registry.uri())
    client.delete_model_version_tag(name, str(version), "manifest_sha256")
    with pytest.raises(ArtifactIntegrityError, match="no manifest_sha256 tag"):
        registry.download(name, version)


def test_a_move_whose_record_fails_is_undone_even_while_the_store_stays_locked_a_while(
    registry, name, tmp_path, monkeypatch
):
    """The store locked by another process right after the alias moved: the record fails, and so does the
    first try to move the alias back. Before, the alias stayed on the new version with no record in the
    history (a lock held 150 s: `champion` on v2, history ending at v1); now the undo waits the lock out."""
    import resources.registry as module

    train(registry, name, tmp_path, 2)
    registry.move_alias(name, "champion", 1, expected_from=None, reason="first", actor="ci")
    locked = module.RegistryUnavailable("MLflow database x is locked by another process (database is locked)")
    calls = {"undo": 0}
    real_alias = mlflow.MlflowClient.set_registered_model_alias

    def record(self, model, key, value):
        raise locked

    def alias(self, model, alias_name, version):
        if version == "1":  # the undo, while the lock still holds
            calls["undo"] += 1
            if calls["undo"] <= 2:
                raise locked
        return real_alias(self, model, alias_name, version)

    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_tag", record)
    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", alias)
    with pytest.raises(
        RegistryUnavailable, match=r"could not be recorded \(.*locked.*\); it was moved back to v1, so nothing changed"
    ):
        registry.move_alias(name, "champion", 2, expected_from=1, reason="better", actor="ana", kind="approve")
    assert registry.alias_version(name, "champion") == 1 and calls["undo"] == 3
    assert [m.to_version for m in registry.alias_history(name, "champion")] == [1]

    monkeypatch.setattr(module, "UNDO_SECONDS", 0.5)  # a lock that never ends: the message says what is left
    calls["undo"] = -100
    with pytest.raises(RegistryUnavailable, match="it points to v2 without a record in the alias history"):
        registry.move_alias(name, "champion", 2, expected_from=1, reason="better", actor="ana", kind="approve")


def test_a_move_recorded_whose_since_tag_fails_stands_and_is_returned(registry, name, tmp_path, monkeypatch):
    """The tracking server gone right after the alias moved and its history was written, before the new
    version's `keel.champion.since` tag: the move happened. Before, the caller got MLflow's error, as if
    nothing had moved."""
    train(registry, name, tmp_path, 2)
    registry.move_alias(name, "champion", 1, expected_from=None, reason="first", actor="ci")
    real_tag = mlflow.MlflowClient.set_model_version_tag

    def tag(self, model, version, key, value):
        if key == "keel.champion.since" and version == "2":
            raise MlflowException("API request to http://mlflow:5000 failed: Connection refused")
        return real_tag(self, model, version, key, value)

    monkeypatch.setattr(mlflow.MlflowClient, "set_model_version_tag", tag)
    move = registry.move_alias(name, "champion", 2, expected_from=1, reason="better", actor="ana", kind="approve")
    assert (move.from_version, move.to_version) == (1, 2)
    assert registry.alias_version(name, "champion") == 2
    assert [m.to_version for m in registry.alias_history(name, "champion")] == [1, 2]


@pytest.mark.parametrize("fails", ["the alias removal", "the record"])
def test_a_retired_alias_whose_removal_or_record_fails_keeps_history_and_alias_in_step(
    registry, name, tmp_path, monkeypatch, fails
):
    """The tracking server gone in the middle of a rollback of the challenger. Before, the history's record went
    first: with the alias removal failing, the history said v2 was rolled back while `challenger` still pointed
    to it (its canary went on serving, /health ok)."""
    train(registry, name, tmp_path, 2)
    registry.move_alias(name, "champion", 1, expected_from=None, reason="first", actor="ci")
    registry.move_alias(name, "challenger", 2, expected_from=None, reason="canary", actor="ci")
    gone = MlflowException("API request to http://mlflow:5000 failed: Connection refused")
    real = {
        "delete_registered_model_alias": mlflow.MlflowClient.delete_registered_model_alias,
        "set_registered_model_tag": mlflow.MlflowClient.set_registered_model_tag,
    }
    failing = "delete_registered_model_alias" if fails == "the alias removal" else "set_registered_model_tag"
    calls = {"n": 0}

    def once(self, *args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise gone
        return real[failing](self, *args)

    monkeypatch.setattr(mlflow.MlflowClient, failing, once)
    if fails == "the record":  # the alias was put back: the message says nothing changed
        refused = pytest.raises(RegistryUnavailable, match="Connection refused.*moved back to v2, so nothing changed")
    else:
        refused = pytest.raises(MlflowException, match="Connection refused")
    with refused:
        registry.retire_alias(name, "challenger", 2, reason="p99 bad", actor="bake")
    assert registry.alias_version(name, "challenger") == 2
    assert [m.to_version for m in registry.alias_history(name, "challenger")] == [2]
    monkeypatch.undo()
    move = registry.retire_alias(name, "challenger", 2, reason="p99 bad", actor="bake")
    assert move.from_version == 2 and registry.alias_version(name, "challenger") is None
    assert [m.to_version for m in registry.alias_history(name, "challenger")] == [2, None]
