"""The model registry: MLflow experiment tracking plus registered model versions moved between aliases.

A trained model is logged as a plain artifact directory (see ml.artifact): no MLflow flavour, no
pyfunc, nothing pickled. Every registered version carries its lineage as tags, including the sha256
of its manifest, and `download` refuses a version whose files no longer match.

Registration downloads what the run logged and checks every file against the manifest before a
version exists; an alias moves only to a version that downloads, verifies and (given a loader)
loads, so a version nobody can score never becomes champion.

Aliases (`champion`, ...) are moved by compare-and-set: the caller says which version it expects
the alias to point to, and the move fails with AliasConflict if someone else moved it meanwhile.
MLflow has no CAS of its own, so the read-check-write runs under an exclusive file lock in
`<root>/locks`. That lock covers every process that shares the `root` folder (one machine, or a
shared file system); the Dagster pool ALIAS_POOL serialises the moves of every run of one Dagster
deployment whatever its lock folder. Each move is recorded as a registered-model tag
`keel.alias_move.NNNNNN` (JSON), readable in the MLflow UI and API, which is the alias's history.

A locked or unreadable SQLite store raises RegistryUnavailable naming the database file and what to do.

On a tracking server with authentication (the team profile, docs/team.md) the client authenticates
with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD from the environment of the process that
moves the alias, so the server checks that user's permission: a user without MANAGE on the registered
model gets AliasMoveRefused naming them, and nothing moves. Every recorded move names that user; with
`require_identity` (the team profile) no alias moves without one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

import dagster as dg
import mlflow
from filelock import FileLock, Timeout
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from pydantic import Field

from ml.artifact import MANIFEST, ArtifactIntegrityError, verify_artifact
from ml.io import file_digest
from ml.params import Params
from resources.params import ParamsResource

# MLflow draws a progress bar per artifact download on stderr, which only clutters Dagster's logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CHAMPION = "champion"  # the version that scores; moved by promotion, approve and rollback
CHALLENGER = "challenger"  # a version awaiting approval (registry.promotion: manual)
MODEL_PATH = "model"  # the artifact path of the model directory inside a run
REFERENCE_PATH = "reference"  # a version's drift reference profile, beside the model in its run
REFERENCE_TAG = "keel.reference_sha256"
MOVE_TAG = "keel.alias_move."
ALIAS_POOL = "keel_alias_moves"  # the Dagster concurrency pool (limit 1) of every step that moves an alias
MANIFEST_TAG = "manifest_sha256"
# MLflow's limits (mlflow.utils.validation); we clip ourselves rather than depend on
# MLFLOW_TRUNCATE_LONG_VALUES, which a user may have turned off.
MAX_PARAM, MAX_RUN_TAG = 6000, 8000
log = logging.getLogger(__name__)
Kind = Literal["promote", "approve", "rollback"]


class AliasConflict(RuntimeError):
    """The alias no longer points to the version the caller expected: someone else moved it."""


class UnusableVersion(RuntimeError):
    """A version whose artifact cannot be downloaded, verified or loaded: no alias may point to it."""


class AliasMoveRefused(PermissionError):
    """The tracking server refused the move for the authenticated user, or there is no authenticated user."""


class RegistryUnavailable(RuntimeError):
    """The MLflow store cannot be used (a locked or corrupt SQLite file); the message says what to do."""


UNDO_SECONDS = 300.0  # how long an alias move whose record failed keeps trying to move the alias back
Loader = Callable[[Path], object]  # parses a verified artifact directory, raising when it cannot


def _short(error: BaseException) -> str:
    """The error on one line, without MLflow's `##### File x #####` headers and SQL statements."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith(("#####", "["))]
    text = " ".join(lines) or type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


@contextmanager
def _database_errors(database: Path | None) -> Iterator[None]:
    """Turn SQLite's "locked" and "not a database" into a message naming the file and what to do."""
    try:
        yield
    except Exception as error:
        # MLflow raises SQLAlchemy's errors raw from some calls and wrapped in MlflowException from others.
        store_error = isinstance(error, MlflowException) or type(error).__module__.startswith("sqlalchemy")
        if database is None or not store_error:
            raise
        text = str(error)
        if "database is locked" in text:
            raise RegistryUnavailable(
                f"MLflow database {database} is locked by another process ({_short(error)}): wait for the "
                "other registry operation to finish, or stop the process holding the file, and run this again"
            ) from error
        if any(sign in text for sign in ("file is not a database", "malformed", "no such table")):
            raise RegistryUnavailable(
                f"MLflow database {database} is not a readable MLflow store ({_short(error)}): restore it from a "
                "backup, or move it aside to start an empty registry (then run train_model to register a champion)"
            ) from error
        raise


class _GuardedClient:
    """An MlflowClient whose store errors name the SQLite file (see _database_errors)."""

    def __init__(self, client: mlflow.MlflowClient, database: Path | None):
        self._client, self._database = client, database

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._client, attr)
        if not callable(value):
            return value

        @functools.wraps(value)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with _database_errors(self._database):
                return value(*args, **kwargs)

        return guarded


@dataclass(frozen=True)
class AliasMove:
    when: str
    model: str
    alias: str
    from_version: int | None
    to_version: int
    reason: str
    actor: str
    dagster_run_id: str | None = None
    kind: Kind = "promote"
    mlflow_user: str | None = None  # the authenticated identity the server checked; None on a local store

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        if record["mlflow_user"] is None:  # a local store's moves are recorded as they always were
            del record["mlflow_user"]
        return record


def _as_actor(user: str | None, actor: str) -> str:
    """The recorded actor: the authenticated MLflow user first, when there is one, then what Dagster knows."""
    return f"MLflow user {user} (authenticated); {actor}" if user else actor


def _v(version: int | None) -> str:
    return "unset" if version is None else f"v{version}"


def _raise_undone(move: AliasMove, error: BaseException) -> NoReturn:
    """The move was undone after its record failed: nothing changed, and the message says so."""
    if not isinstance(error, Exception):  # an interrupt stays what it is
        raise error
    raise RegistryUnavailable(
        f"{move.alias!r} of model {move.model!r} was moved to {_v(move.to_version)}, but the move could not be "
        f"recorded ({_short(error)}); it was moved back to {_v(move.from_version)}, so nothing changed. Try again "
        "once the registry answers"
    ) from error


def _clip(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 14] + "...[truncated]"


def _missing(error: MlflowException) -> bool:
    return error.error_code == "RESOURCE_DOES_NOT_EXIST"


def _refused(error: BaseException) -> bool:
    """The tracking server answered 401 or 403: the credentials are missing, wrong or not enough."""
    return isinstance(error, MlflowException) and error.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED")


class ModelRegistry(dg.ConfigurableResource):
    """MLflow tracking and model registry, with compare-and-set alias moves and verified downloads."""

    root: str = Field(description="Local folder for the default MLflow store and for the alias locks.")
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking (and registry) URI; default: $MLFLOW_TRACKING_URI, else SQLite under root.",
    )
    lock_timeout: float = Field(default=60.0, description="Seconds to wait for another alias move to finish.")
    params: ParamsResource | None = Field(
        default=None, description="The project's settings: the model's name and the promotion mode (`registry:`)."
    )
    require_identity: bool = Field(
        default=False,
        description="Refuse every alias move and registration without an authenticated MLflow user "
        "(MLFLOW_TRACKING_USERNAME on an http(s) tracking URI); on in the team profile.",
    )

    # --- the project's model ----------------------------------------------------------------
    def _settings(self) -> Params:
        if self.params is None:
            raise ValueError("this ModelRegistry has no params: give it the project's ParamsResource")
        return self.params.load()

    @property
    def model_name(self) -> str:
        """The project's registered model: params.yaml registry.model_name, else the dataset's name."""
        return self._settings().model_name

    @property
    def promotion(self) -> str:
        """auto: a candidate that passed the gate becomes champion; manual: challenger until approved."""
        return self._settings().registry.promotion

    def champion(self) -> int | None:
        """The project's champion version, or None."""
        return self.alias_version(self.model_name, CHAMPION)

    # --- store ------------------------------------------------------------------------------
    def _root(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def uri(self) -> str:
        """The tracking URI in effect, which is also the registry URI."""
        if self.tracking_uri:
            return self.tracking_uri
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self._root() / 'mlflow.db'}"

    def identity(self) -> str | None:
        """The MLflow user this process authenticates as: MLFLOW_TRACKING_USERNAME on a tracking server, else None.

        MLflow's client sends it (with MLFLOW_TRACKING_PASSWORD) on every request, and the server checks
        its permission; a local store has no users.
        """
        if self.uri().split(":", 1)[0] not in {"http", "https"}:
            return None
        return os.environ.get("MLFLOW_TRACKING_USERNAME") or None

    def _mover(self, what: str) -> str | None:
        """The identity that will move an alias, refusing when the profile demands one and there is none."""
        user = self.identity()
        if user is None and self.require_identity:
            raise AliasMoveRefused(
                f"{what}: refused: no authenticated MLflow user; this deployment moves aliases only as an "
                f"authenticated user of the tracking server {self.uri()}: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to your MLflow account in the environment of the process that runs it"
            )
        return user

    @contextmanager
    def _as_user(self, user: str | None, what: str, name: str) -> Iterator[None]:
        """Turn the server's 401/403 into AliasMoveRefused naming the user and the permission needed."""
        try:
            yield
        except MlflowException as error:
            if not _refused(error):
                raise
            raise AliasMoveRefused(
                f"{what}: refused by the MLflow server for user {user or '(anonymous)'!r}: moving an alias needs "
                f"MANAGE permission on registered model {name!r} (it removes the old version's tags), which "
                f"{user or 'an anonymous request'!r} does not have ({error.error_code}); nothing was moved. An "
                "MLflow admin grants it with `grant_user_permission` (docs/team.md)"
            ) from None

    def database(self) -> Path | None:
        """The SQLite file of the store, or None for any other kind of store."""
        uri = self.uri()
        return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None

    def store_identity(self) -> tuple[int, int] | None:
        """The SQLite file's (device, inode), None when the store is no SQLite file; FileNotFoundError when the
        file is gone. A different identity means the database was replaced (moved, restored) under us."""
        database = self.database()
        if database is None:
            return None
        if not database.is_file():
            raise FileNotFoundError(
                f"MLflow database {database} does not exist (moved or deleted?): put it back, or train and "
                "promote a model to create a new registry there"
            )
        stat = database.stat()
        return stat.st_dev, stat.st_ino

    def reconnect(self) -> None:
        """Close the pooled connections to the store, so the next call opens the file now at its path: an open
        SQLite connection keeps reading a database file that was moved away."""
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

        for store in (RegistryStore, TrackingStore):
            engine = store._engine_map.get(self.uri())
            if engine is not None:
                engine.dispose()

    def _refuse_a_lost_database(self, database: Path) -> None:
        """A missing SQLite file is created (empty) by MLflow: right for a new store, wrong when the store's
        artifacts show it held runs. Then the file was moved or deleted, and an empty registry in its place
        would forget every version and alias ("no champion", a new v1 that clashes with the old one)."""
        artifacts = self._root() / "artifacts"
        if not database.exists() and artifacts.is_dir() and any(artifacts.iterdir()):
            raise RegistryUnavailable(
                f"MLflow database {database} does not exist, but {artifacts} holds the artifacts of its runs: the "
                "database was moved or deleted. Put it back (an empty registry in its place would forget every "
                f"version and alias); to start a new registry on purpose, move {artifacts} aside as well"
            )

    def client(self) -> mlflow.MlflowClient:
        """A client on the store; MLflow caches the store per URI, so this is cheap after the first call."""
        database = self.database()
        if database is not None:
            self._refuse_a_lost_database(database)
            database.parent.mkdir(parents=True, exist_ok=True)
        with _database_errors(database):  # MLflow opens (and migrates) the file here
            client = mlflow.MlflowClient(tracking_uri=self.uri(), registry_uri=self.uri())
        return _GuardedClient(client, database)  # type: ignore[return-value]

    def _experiment_id(self, client: mlflow.MlflowClient, name: str) -> str:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        # A tracking server picks its own artifact store; a database store would default to ./mlruns in
        # whatever the current directory is, so pin the artifacts under root.
        remote = self.uri().split(":", 1)[0] in {"http", "https", "databricks"}
        location = None if remote else (self._root() / "artifacts").as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as error:  # another process created it between our read and write
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id

    # --- tracking ---------------------------------------------------------------------------
    def log_training_run(
        self,
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, Any],
        artifact_dir: Path | str,
    ) -> str:
        """Log one finished run: params, metrics, tags and the artifact directory under `model`; return its id."""
        client = self.client()
        run = client.create_run(self._experiment_id(client, experiment), run_name=run_name)
        run_id = run.info.run_id
        try:
            if not Path(artifact_dir).is_dir():
                raise FileNotFoundError(f"{artifact_dir}: the model artifact directory does not exist")
            now = int(datetime.now(UTC).timestamp() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
                params=[Param(key, _clip(value, MAX_PARAM)) for key, value in params.items()],
                tags=[RunTag(key, _clip(value, MAX_RUN_TAG)) for key, value in tags.items()],
            )
            client.log_artifacts(run_id, str(artifact_dir), artifact_path=MODEL_PATH)
        except BaseException:
            # Without this the run stays RUNNING forever in the UI.
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
        return run_id

    def set_run_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        """Add or overwrite tags on an existing run."""
        self.client().log_batch(run_id, tags=[RunTag(key, _clip(value, MAX_RUN_TAG)) for key, value in tags.items()])

    # --- registry ---------------------------------------------------------------------------
    def register(
        self, name: str, run_id: str, tags: dict[str, str], description: str = "", load: Loader | None = None
    ) -> int:
        """Register the run's `model` folder as a new version of `name` with lineage tags; return the version.

        Every file the run logged is downloaded and checked against the manifest `tags` names (and
        parsed by `load`, when given) first: what is registered is what was graded, or nothing is.
        """
        if not tags.get(MANIFEST_TAG):
            raise ValueError(
                f"registering {name!r}: tags must include {MANIFEST_TAG!r}, or the version cannot be verified"
            )
        client = self.client()
        source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"
        with tempfile.TemporaryDirectory(prefix="keel-register-") as tmp:
            local = Path(tmp) / MODEL_PATH
            try:
                local = self._fetch(source, Path(tmp))
                verify_artifact(local, expected_manifest_sha256=tags[MANIFEST_TAG])
                if load is not None:
                    load(local)
            except RegistryUnavailable:
                raise
            except Exception as error:
                problem = _short(error).replace(str(local), source)  # name the stored file, not our copy
                raise UnusableVersion(
                    f"registering {name!r} from MLflow run {run_id}: {problem}; nothing was registered: what MLflow "
                    "holds for this run is not a usable copy of the evaluated model; train a new candidate"
                ) from None
        user = self._mover(f"registering {name!r}")
        with self._as_user(user, f"registering a version of {name!r}", name):
            try:
                client.create_registered_model(name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            version = client.create_model_version(
                name,
                source,
                run_id=run_id,
                tags={key: str(value) for key, value in tags.items()},
                description=description,
            )
        return int(version.version)

    def _search(self, filter_string: str) -> list[int]:
        client, found, token = self.client(), [], None
        while True:
            page = client.search_model_versions(filter_string, page_token=token)
            found += [int(version.version) for version in page]
            token = page.token
            if not token:
                return sorted(found)

    def versions(self, name: str) -> list[int]:
        """All version numbers of a registered model, ascending (empty when it does not exist)."""
        return self._search(f"name = '{name}'")

    def version_for_run(self, name: str, run_id: str) -> int | None:
        """The first version of `name` registered from `run_id`, or None."""
        return next(iter(self._search(f"name = '{name}' and run_id = '{run_id}'")), None)

    def version_info(self, name: str, version: int) -> dict[str, Any]:
        """The version's run, source, tags, aliases and creation time."""
        mv = self.client().get_model_version(name, str(version))
        return {
            "name": name,
            "version": int(mv.version),
            "run_id": mv.run_id,
            "source": mv.source,
            "tags": dict(mv.tags),
            "aliases": list(mv.aliases),
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(),
            "description": mv.description or "",
        }

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version the alias points to; None when it is not set or the model does not exist."""
        try:
            aliases = self.client().get_registered_model(name).aliases
        except MlflowException as error:
            if _missing(error):
                return None
            raise
        return int(aliases[alias]) if alias in aliases else None

    # --- alias moves ------------------------------------------------------------------------
    def move_alias(
        self,
        name: str,
        alias: str,
        to_version: int,
        expected_from: int | None,
        reason: str,
        actor: str,
        dagster_run_id: str | None = None,
        kind: Kind = "promote",
        load: Loader | None = None,
    ) -> AliasMove:
        """Point `alias` at `to_version` if it still points at `expected_from`, and record the move.

        The version must download, verify and (with `load`) load first; else UnusableVersion, and nothing moves.
        """
        if kind not in ("promote", "approve", "rollback"):
            raise ValueError(f"kind must be promote, approve or rollback, not {kind!r}")
        what = f"moving {alias!r} of model {name!r} to v{to_version}"
        user = self._mover(what)
        if to_version not in self.versions(name):
            raise ValueError(f"model {name!r} has no version {to_version} (versions: {self.versions(name) or 'none'})")
        try:
            self.verify_version(name, to_version, load)  # outside the lock: a download can take a while
        except UnusableVersion as error:
            raise UnusableVersion(f"{alias!r} was not moved to v{to_version}: {error}") from None
        with self._alias_lock(name):
            client = self.client()
            if to_version not in self.versions(name):
                raise ValueError(
                    f"model {name!r} has no version {to_version} (versions: {self.versions(name) or 'none'})"
                )
            current = self.alias_version(name, alias)  # re-read under the lock: the compare of compare-and-set
            if current != expected_from:
                last = next((m for m in reversed(self.alias_history(name, alias)) if m.to_version == current), None)
                how = f"moved {last.when} by {last.actor}: {last.reason}" if last else "no recorded move"
                raise AliasConflict(
                    f"cannot move {alias!r} of model {name!r} from {_v(expected_from)} to v{to_version}: "
                    f"it points to {_v(current)} now ({how}); re-read and try again"
                )
            if current == to_version:
                raise ValueError(f"{alias!r} of model {name!r} already points to v{to_version}")
            move = AliasMove(
                when=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                model=name,
                alias=alias,
                from_version=current,
                to_version=to_version,
                reason=reason,
                actor=_as_actor(user, actor),
                dagster_run_id=dagster_run_id,
                kind=kind,
                mlflow_user=user,
            )
            with self._as_user(user, what, name):
                self._record(client, move)
            return move

    @contextmanager
    def _alias_lock(self, name: str) -> Iterator[None]:
        lock_path = self._root() / "locks" / f"{name}.aliases.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_path, timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise TimeoutError(
                f"could not lock the aliases of model {name!r} within {self.lock_timeout:g} s ({lock_path}): "
                "another alias move is holding it; try again"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _record(self, client: mlflow.MlflowClient, move: AliasMove) -> None:
        """Set the alias and append the move to the model's history (caller holds the lock)."""
        name, alias, current = move.model, move.alias, move.from_version
        sequence = max((int(key[len(MOVE_TAG) :]) for key in self._move_tags(name)), default=0) + 1
        since_key = f"keel.{alias}.since"
        # The old version's tag goes first: removing a tag is the step that needs the most permission on a
        # server with authentication (MANAGE), so a user who may not do it is refused before anything moved.
        old_since = self.version_info(name, current)["tags"].get(since_key) if current is not None else None
        if old_since is not None:
            client.delete_model_version_tag(name, str(current), since_key)
        try:
            client.set_registered_model_alias(name, alias, str(move.to_version))
            try:
                client.set_registered_model_tag(name, f"{MOVE_TAG}{sequence:06d}", json.dumps(move.to_dict()))
            except BaseException as error:
                # An unrecorded move would be invisible to history and rollback: undo it, waiting out the
                # lock or outage that failed the record (it may still hold the store).
                self._undo(client, move, error)
                _raise_undone(move, error)
        except BaseException:
            if old_since is not None:
                client.set_model_version_tag(name, str(current), since_key, old_since)
            raise
        try:
            client.set_model_version_tag(name, str(move.to_version), since_key, move.when)
        except Exception as error:  # noqa: BLE001 - the alias moved and its history has the move: it stands
            log.warning(
                "%r of model %r moved to v%s and recorded, but its tag %s could not be set (%s); the alias history "
                "has the move's time",
                alias,
                name,
                move.to_version,
                since_key,
                _short(error),
            )

    def _undo(self, client: mlflow.MlflowClient, move: AliasMove, error: BaseException) -> None:
        """Point the alias back where it was before `move`, retried for up to UNDO_SECONDS; else raise
        RegistryUnavailable saying the alias moved without a record and how to set it back."""
        name, alias, current = move.model, move.alias, move.from_version
        deadline, pause = time.monotonic() + UNDO_SECONDS, 0.5
        while True:
            try:
                if current is None:
                    client.delete_registered_model_alias(name, alias)
                else:
                    client.set_registered_model_alias(name, alias, str(current))
                return
            except Exception as problem:
                if time.monotonic() + pause > deadline:
                    raise RegistryUnavailable(
                        f"{alias!r} of model {name!r} was moved to {_v(move.to_version)}, but the move could not be "
                        f"recorded ({_short(error)}) and moving it back to {_v(current)} failed for "
                        f"{UNDO_SECONDS:g} s ({_short(problem)}): it points to {_v(move.to_version)} without a record "
                        f"in the alias history. Set it back to {_v(current)} once the registry answers, then move "
                        "it again with the job"
                    ) from error
                time.sleep(pause)
                pause = min(pause * 2, 2.0)  # short: until it lands, the alias names a move with no record

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias (no-op when it is not set); not a move, so it is not added to the history."""
        what = f"removing {alias!r} of model {name!r}"
        user = self._mover(what)
        with self._alias_lock(name), self._as_user(user, what, name):
            current = self.alias_version(name, alias)
            if current is not None:
                client = self.client()
                client.delete_registered_model_alias(name, alias)
                client.delete_model_version_tag(name, str(current), f"keel.{alias}.since")

    def _move_tags(self, name: str) -> dict[str, str]:
        try:
            tags = self.client().get_registered_model(name).tags
        except MlflowException as error:
            if _missing(error):
                return {}
            raise
        return {key: value for key, value in tags.items() if key.startswith(MOVE_TAG)}

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Recorded alias moves of the model (of one alias, if given), oldest first."""
        moves = [AliasMove(**json.loads(value)) for _, value in sorted(self._move_tags(name).items())]
        return [move for move in moves if alias is None or move.alias == alias]

    def rollback_target(self, name: str, alias: str = CHAMPION) -> int | None:
        """The version a rollback should return to: the one below the current top of the alias's history."""
        stack: list[int] = []
        for move in self.alias_history(name, alias):
            if move.kind == "rollback":
                # Unwind to the version rolled back to (normally just one pop).
                while stack and stack[-1] != move.to_version:
                    stack.pop()
                if not stack:
                    stack.append(move.to_version)
            else:
                stack.append(move.to_version)
        return stack[-2] if len(stack) >= 2 else None

    # --- the drift reference stored with a version ------------------------------------------
    def attach_reference(self, name: str, version: int, local_file: Path | str) -> str:
        """Store `local_file` with the version (in its run, under `reference/`) and tag its sha256."""
        local_file = Path(local_file)
        digest = file_digest(str(local_file))
        client = self.client()
        client.log_artifact(self.version_info(name, version)["run_id"], str(local_file), artifact_path=REFERENCE_PATH)
        client.set_model_version_tag(name, str(version), REFERENCE_TAG, digest)
        return digest

    def reference(self, name: str, version: int, dest_dir: Path | str) -> Path:
        """Download the version's reference file into `dest_dir`, verified against its tag."""
        info = self.version_info(name, version)
        expected = info["tags"].get(REFERENCE_TAG)
        if not expected:
            raise ArtifactIntegrityError(
                f"model {name!r} v{version} has no drift reference ({REFERENCE_TAG} tag); it was registered "
                "before references were stored: register a new version to monitor drift"
            )
        with _database_errors(self.database()):
            local = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=info["run_id"], artifact_path=REFERENCE_PATH, dst_path=str(dest_dir), tracking_uri=self.uri()
                )
            )
        files = [p for p in local.rglob("*") if p.is_file()] if local.is_dir() else [local]
        if len(files) != 1 or file_digest(str(files[0])) != expected:
            raise ArtifactIntegrityError(
                f"model {name!r} v{version}: the drift reference does not match {REFERENCE_TAG}"
            )
        return files[0]

    # --- download ---------------------------------------------------------------------------
    def _fetch(self, artifact_uri: str, dest: Path) -> Path:
        with _database_errors(self.database()):
            return Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=artifact_uri, dst_path=str(dest), tracking_uri=self.uri()
                )
            )

    def verify_version(self, name: str, version: int, load: Loader | None = None) -> None:
        """Raise UnusableVersion unless the version downloads, verifies against its manifest and loads."""
        try:
            local = self.download(name, version)
        except ArtifactIntegrityError as error:
            raise UnusableVersion(f"{error}; restore its artifact or register a new version") from None
        except (MlflowException, OSError) as error:
            source = self.version_info(name, version)["source"]
            raise UnusableVersion(
                f"model {name!r} v{version}: its artifact cannot be downloaded from {source} ({_short(error)}); "
                "restore it there or register a new version"
            ) from None
        try:
            if load is not None:
                load(local)
        except Exception as error:
            raise UnusableVersion(
                f"model {name!r} v{version}: its artifact verifies but does not load ({type(error).__name__}: "
                f"{_short(error)}); register a new version"
            ) from None
        finally:
            shutil.rmtree(local.parent, ignore_errors=True)

    def registered_manifest_sha256(self, name: str, version: int) -> str:
        """The sha256 of the version's own manifest.json as MLflow stores it (one small download), whatever its
        `manifest_sha256` tag says: a tag edited by hand may name another version's files."""
        source = self.client().get_model_version_download_uri(name, str(version))
        with tempfile.TemporaryDirectory(prefix=f"keel-{name}-v{version}-manifest-") as tmp:
            try:
                local = self._fetch(f"{source.rstrip('/')}/{MANIFEST}", Path(tmp))
                return file_digest(str(local))
            except RegistryUnavailable:
                raise
            except (MlflowException, OSError) as error:
                raise ArtifactIntegrityError(
                    f"model {name!r} v{version}: its {MANIFEST} cannot be read from {source} ({_short(error)}), so "
                    f"its {MANIFEST_TAG} tag cannot be checked against it; restore it there or register a new version"
                ) from None

    def download(self, name: str, version: int, dest: Path | None = None) -> Path:
        """Download the version's artifact into a fresh directory and verify it against its registered manifest."""
        info = self.version_info(name, version)
        expected = info["tags"].get(MANIFEST_TAG)
        if not expected:
            raise ArtifactIntegrityError(f"model {name!r} v{version}: no {MANIFEST_TAG} tag, so it cannot be verified")
        dest = None if dest is None else Path(dest)
        if dest is not None and dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"{dest}: not empty; download into a fresh directory")
        source = self.client().get_model_version_download_uri(name, str(version))
        staging = Path(tempfile.mkdtemp(prefix=f"keel-{name}-v{version}-"))
        try:
            local = self._fetch(source, staging)
            verify_artifact(local, expected_manifest_sha256=expected)
        except ArtifactIntegrityError as error:
            shutil.rmtree(staging, ignore_errors=True)
            problem = str(error).replace(str(staging / MODEL_PATH), source)  # name the stored file, not our copy
            raise ArtifactIntegrityError(f"model {name!r} v{version}: {problem}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if dest is None:
            return local
        # Only a verified artifact ever appears at dest.
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            dest.rmdir()
        shutil.move(local, dest)
        shutil.rmtree(staging, ignore_errors=True)
        return dest

    def retire_alias(
        self,
        name: str,
        alias: str,
        expected: int,
        reason: str,
        actor: str,
        dagster_run_id: str | None = None,
        kind: Kind = "rollback",
    ) -> AliasMove:
        """Remove `alias` from version `expected` (compare-and-set) and record it in the history with why.

        Unlike delete_alias this is a move (to no version), so a rolled-back challenger stays visible.
        """
        what = f"removing {alias!r} of model {name!r} from v{expected}"
        user = self._mover(what)
        with self._alias_lock(name), self._as_user(user, what, name):
            current = self.alias_version(name, alias)
            if current != expected:
                raise AliasConflict(
                    f"cannot remove {alias!r} of model {name!r} from v{expected}: it points to {_v(current)} now"
                )
            move = AliasMove(
                when=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                model=name,
                alias=alias,
                from_version=current,
                to_version=None,  # type: ignore[arg-type]  # no version holds the alias any more
                reason=reason,
                actor=_as_actor(user, actor),
                dagster_run_id=dagster_run_id,
                kind=kind,
                mlflow_user=user,
            )
            client = self.client()
            sequence = max((int(key[len(MOVE_TAG) :]) for key in self._move_tags(name)), default=0) + 1
            # The alias first, then its record, as a move does: a record of a removal that never happened
            # would say the version was rolled back while it still serves.
            client.delete_registered_model_alias(name, alias)
            try:
                client.set_registered_model_tag(name, f"{MOVE_TAG}{sequence:06d}", json.dumps(move.to_dict()))
            except BaseException as error:
                self._undo(client, move, error)
                _raise_undone(move, error)
            try:
                client.delete_model_version_tag(name, str(current), f"keel.{alias}.since")
            except Exception as error:  # noqa: BLE001 - the alias is off the version and the history says so
                log.warning(
                    "%r of model %r removed from v%s, but its since tag stays (%s)", alias, name, current, _short(error)
                )
            return move
