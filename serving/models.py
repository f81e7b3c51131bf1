"""The models the endpoint serves, loaded verified, and the poller that keeps them in step with the registry.

A version is loaded from its published copy in the artifact store (resources/layout.py, as batch
scoring reads it), checked file by file against the manifest sha256 the registry recorded; a copy
that does not verify is replaced by the registry's verified download first (resources/published.py).

The registry is the truth. The poller re-reads the `champion` and `challenger` aliases and the
rollout state every `poll_seconds`; the rollout state counts only as far as the aliases agree with
it (serving/state.py `reconcile`). A new version is loaded on the poller's thread and the whole
`Serving` snapshot is replaced in one assignment, so a request in flight keeps the snapshot it
started with and none is dropped. What goes wrong is kept as a problem that `/health` reports:

- the registry cannot be read, or the champion does not load: the previous snapshot keeps serving;
- the rollout file cannot be read: the aliases are followed (the last good rollout state, while the
  aliases still agree with it; else the champion alone);
- the challenger does not load: the champion answers alone (retried every `10 * poll_seconds`);
- the MLflow database was replaced (moved, restored): its pooled connections are closed and the new
  file is read, so the champion is the one the database at that path names.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from ml import io
from ml.predictor import Predictor
from resources.published import published_copy
from resources.registry import CHALLENGER, CHAMPION, MANIFEST_TAG, ModelRegistry
from resources.storage import ArtifactStore
from serving.state import RolloutState, read_state, reconcile, state_uri

log = logging.getLogger("serving")

# Problems /health reports, by kind.
REFRESH, ROLLOUT_FILE, ROLLOUT_ALIASES, CHALLENGER_LOAD, STORE = (
    "refresh",
    "rollout_file",
    "rollout_aliases",
    "challenger",
    "store",
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LoadedModel:
    version: int
    manifest_sha256: str
    predictor: Predictor
    loaded_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    note: str | None = None  # e.g. its published copy had to be re-published


@dataclass(frozen=True)
class Serving:
    """What the endpoint serves right now: replaced as a whole, never changed in place."""

    champion: LoadedModel
    challenger: LoadedModel | None
    state: RolloutState  # as the registry's aliases allow it (the file's, or `off` with the reason)
    challenger_alias: int | None = None

    @property
    def mode(self) -> str:
        return self.state.mode if self.challenger is not None else "off"


@dataclass(frozen=True)
class Problem:
    message: str
    since: float  # time.monotonic() when first seen
    since_utc: str


def warm_up(predictor: Predictor) -> None:
    """Score one row made of the feature state's own fill values: a model that cannot score is never
    swapped in, and the first request does not pay for LightGBM's first-call setup (~100 ms)."""
    from serving.scoring import rows_batch

    state = predictor.state
    row = {n.column: n.fill for n in state.numeric}
    row |= {c.column: (c.levels[0] if c.levels else None) for c in state.categorical}
    row |= {b.column: (state.true_tokens if b.fill else state.false_tokens)[0] for b in state.boolean}
    predictor.predict(rows_batch([row], predictor))


class ModelSource:
    def __init__(self, registry: ModelRegistry, store: ArtifactStore, model_name: str, compiled: bool = True):
        self.registry, self.store, self.model_name = registry, store, model_name
        self.compiled = compiled  # as batch scoring predicts (params.yaml scoring.compiled)

    def manifest_sha256(self, version: int) -> str:
        expected = self.registry.version_info(self.model_name, version)["tags"].get(MANIFEST_TAG)
        if not expected:
            raise ValueError(f"model {self.model_name!r} v{version} has no {MANIFEST_TAG} tag: it cannot be verified")
        return expected

    def load(self, version: int, expected: str | None = None) -> LoadedModel:
        """The version's predictor from its verified published copy (re-published when it did not verify),
        every file checked against its registered manifest sha256, warmed up.

        A downloaded copy (a remote store's) stays on disk while the model is in use (the predictor may
        read its directory after loading) and is removed once the model is dropped.
        """
        expected = expected or self.manifest_sha256(version)
        published, note = published_copy(self.store, self.registry, self.model_name, version)
        owned = self.store.download(published) if io.is_remote(published) else None
        local = owned or Path(published)
        try:
            model = LoadedModel(version, expected, Predictor.load(local, expected, compiled=self.compiled), note=note)
            warm_up(model.predictor)
        except BaseException:
            if owned is not None:
                shutil.rmtree(owned, ignore_errors=True)
            raise
        if owned is not None:
            weakref.finalize(model, shutil.rmtree, owned, ignore_errors=True)
        return model


class ModelPoller:
    """Keeps `current` in step with the registry's aliases and the rollout state (a background thread)."""

    def __init__(self, source: ModelSource, store_root: str, poll_seconds: float):
        self.source, self.store_root, self.poll_seconds = source, store_root, poll_seconds
        self.current: Serving | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self.store_replaced: list[dict] = []  # every replacement of the MLflow database seen, oldest first
        self.retry_seconds = 10 * poll_seconds  # a challenger that failed to load is tried again after this
        self._problems: dict[str, Problem] = {}
        self._last_good_state: RolloutState | None = None
        self._unreadable = RolloutState(mode="off", reason="no readable rollout state", decided_by="the server")
        self._store_identity: tuple[int, int] | None = None
        self._wanted: tuple[int, str] | None = None  # the registry's champion (version, manifest sha256)
        self._wanted_since: float | None = None  # since when the served champion differs from it
        self._refreshed_at: float | None = None  # when the last refresh ended, well or not
        self._failed: dict[tuple[int, str], tuple[float, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    # --- problems -----------------------------------------------------------------------------
    def _report(self, kind: str, message: str | None) -> None:
        if message is None:
            self._problems.pop(kind, None)
        elif kind not in self._problems or self._problems[kind].message != message:
            previous = self._problems.get(kind)
            if previous is None:
                log.warning("%s", message)
            self._problems[kind] = Problem(
                message, previous.since if previous else time.monotonic(), previous.since_utc if previous else _now()
            )

    def problems(self) -> list[dict[str, str]]:
        """What keeps the endpoint from serving exactly what the registry names, with since when."""
        now, found = time.monotonic(), []
        settle = 2 * self.poll_seconds  # a refresh or two: an alias move in progress is not a problem yet
        for kind, problem in list(self._problems.items()):
            if kind == ROLLOUT_ALIASES and now - problem.since <= settle:
                continue
            found.append({"kind": kind, "reason": problem.message, "since": problem.since_utc})
        current, wanted, since = self.current, self._wanted, self._wanted_since
        if current is not None and wanted is not None and since is not None and now - since > settle:
            served = (current.champion.version, current.champion.manifest_sha256)
            if served != wanted:
                found.append(
                    {
                        "kind": "stale",
                        "reason": f"serving champion v{served[0]} ({served[1][:12]}) while the registry's champion is "
                        f"v{wanted[0]} ({wanted[1][:12]}), for {now - since:.0f} s",
                        "since": dt.datetime.fromtimestamp(time.time() - (now - since), dt.UTC).isoformat(
                            timespec="seconds"
                        ),
                    }
                )
        overdue = max(5 * self.poll_seconds, 60.0)  # a load (download, compile) may take a while
        if self._refreshed_at is not None and now - self._refreshed_at > overdue:
            found.append(
                {
                    "kind": "stuck",
                    "reason": f"the registry was last checked {now - self._refreshed_at:.0f} s ago "
                    f"(every {self.poll_seconds:g} s expected): the model refresh is stuck",
                    "since": _now(),
                }
            )
        return found

    # --- loading ------------------------------------------------------------------------------
    def _cached(self, version: int, sha: str) -> LoadedModel | None:
        current = self.current
        for model in (current.champion, current.challenger) if current else ():
            if model is not None and (model.version, model.manifest_sha256) == (version, sha):
                return model
        return None

    def _model(self, version: int, sha: str) -> LoadedModel:
        return self._cached(version, sha) or self.source.load(version, sha)

    def _challenger(self, version: int) -> LoadedModel | None:
        """The challenger, or None (and the reason reported) when it cannot be loaded: never the champion's fall."""
        key = None
        try:
            key = (version, self.source.manifest_sha256(version))
            cached = self._cached(*key)
            if cached is not None:
                return cached
            failed = self._failed.get(key)
            if failed is not None and time.monotonic() - failed[0] < self.retry_seconds:
                return None  # its reason stays reported
            model = self.source.load(*key)
            self._failed.pop(key, None)
            return model
        except Exception as error:  # noqa: BLE001 - any failure leaves the champion serving alone
            message = (
                f"challenger v{version} cannot be loaded ({type(error).__name__}: {error}); the champion answers "
                f"every request (tried again every {self.retry_seconds:g} s)"
            )
            if key is not None:
                self._failed[key] = (time.monotonic(), message)
            self._report(CHALLENGER_LOAD, message)
            return None

    # --- the registry, then the rollout file --------------------------------------------------
    def _check_store(self) -> None:
        """Follow a replaced MLflow database: an open SQLite connection would keep reading the moved file."""
        registry = self.source.registry
        identity = registry.store_identity()  # FileNotFoundError when the file is gone: the refresh fails
        if self._store_identity is not None and identity != self._store_identity:
            registry.reconnect()
            event = {"at": _now(), "database": str(registry.database()), "was": self._store_identity, "now": identity}
            self.store_replaced.append(event)
            self._report(
                STORE,
                f"the MLflow database {registry.database()} was replaced at {event['at']} (another file is at its "
                "path now): reading the new one; the models it names are loaded",
            )
        self._store_identity = identity

    def _rollout_state(self) -> RolloutState:
        """The rollout file's state; when it cannot be read, the last good one (the aliases judge it next)."""
        try:
            state = read_state(self.store_root)
        except Exception as error:  # noqa: BLE001 - unparseable, invalid, unreadable: the registry decides
            fallback = self._last_good_state or self._unreadable
            self._report(
                ROLLOUT_FILE,
                f"{state_uri(self.store_root)} cannot be used ({type(error).__name__}: {error}); following the "
                f"registry's aliases with the last readable rollout state ({fallback.mode})",
            )
            return fallback
        self._report(ROLLOUT_FILE, None)
        self._last_good_state = state
        return state

    def refresh(self) -> bool:
        """Re-read the aliases and the rollout state; swap in a new snapshot if anything moved."""
        name, registry = self.source.model_name, self.source.registry
        self._check_store()
        champion = registry.alias_version(name, CHAMPION)
        challenger_alias = registry.alias_version(name, CHALLENGER)
        if champion is None:
            raise LookupError(f"model {name!r} has no {CHAMPION!r} alias: train and promote a model first")
        wanted = (champion, self.source.manifest_sha256(champion))
        current = self.current
        if wanted != self._wanted or self._wanted_since is None:
            self._wanted = wanted
            served = (current.champion.version, current.champion.manifest_sha256) if current else None
            self._wanted_since = time.monotonic() if served != wanted else None
        state, overruled = reconcile(self._rollout_state(), champion, challenger_alias)
        self._report(ROLLOUT_ALIASES, overruled)

        champion_model = self._model(*wanted)  # raises: the previous snapshot keeps serving
        challenger = self._challenger(state.challenger_version) if state.mode != "off" else None
        if challenger is not None or state.mode == "off":
            self._report(CHALLENGER_LOAD, None)
        new = Serving(champion_model, challenger, state, challenger_alias)
        self._report(STORE, None)  # the models are the ones the database at its path names
        self._wanted_since = None
        if (
            current is not None
            and current.champion is new.champion
            and current.challenger is new.challenger
            and current.state == new.state
            and current.challenger_alias == new.challenger_alias
        ):
            return False
        self.current = new  # one assignment: requests read either the old snapshot or this one
        self.reloads += 1
        log.info(
            "serving champion v%s, %s",
            champion,
            f"{state.mode} v{challenger.version}" if challenger else "no challenger",
        )
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_once()
            self._stop.wait(self.poll_seconds)

    def refresh_once(self) -> None:
        """One refresh, its failure kept as the reason /health gives (the previous snapshot keeps serving)."""
        try:
            self.refresh()
            self.last_error = None
            self._report(REFRESH, None)
        except Exception as error:  # noqa: BLE001
            self.last_error = f"{type(error).__name__}: {error}"
            # Before any snapshot there is nothing to fall back on: say so, as /predict answers 503.
            after = "the previous models keep serving" if self.current is not None else "no model serves yet"
            self._report(REFRESH, f"the model refresh failed ({self.last_error}); {after}")
        finally:
            self._refreshed_at = time.monotonic()
