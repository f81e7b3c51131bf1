"""The models the endpoint serves, loaded verified, and the poller that swaps them when an alias moves.

A version is loaded from its published copy in the artifact store (resources/layout.py, as batch
scoring reads it) when there is one, else downloaded from the registry; either way `Predictor.load`
checks every file against the manifest sha256 the registry recorded. The poller re-reads the
`champion` alias and the rollout state every `poll_seconds`; a new version is loaded on the poller's
thread and the whole `Serving` snapshot is replaced in one assignment, so a request in flight keeps
the snapshot it started with and none is dropped. A version that fails to load is reported and the
previous snapshot stays in place.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from ml import io
from ml.predictor import Predictor
from resources import layout
from resources.registry import CHALLENGER, CHAMPION, MANIFEST_TAG, ModelRegistry
from resources.storage import ArtifactStore
from serving.state import RolloutState, read_state

log = logging.getLogger("serving")


@dataclass(frozen=True)
class LoadedModel:
    version: int
    manifest_sha256: str
    predictor: Predictor
    loaded_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())


@dataclass(frozen=True)
class Serving:
    """What the endpoint serves right now: replaced as a whole, never changed in place."""

    champion: LoadedModel
    challenger: LoadedModel | None
    state: RolloutState
    challenger_alias: int | None = None

    @property
    def mode(self) -> str:
        return self.state.mode if self.challenger is not None else "off"


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

    def load(self, version: int) -> LoadedModel:
        """The version's predictor, every file verified against its registered manifest sha256, warmed up.

        A downloaded copy stays on disk while the model is in use (the predictor may read its
        directory after loading) and is removed once the model is dropped.
        """
        expected = self.registry.version_info(self.model_name, version)["tags"].get(MANIFEST_TAG)
        if not expected:
            raise ValueError(f"model {self.model_name!r} v{version} has no {MANIFEST_TAG} tag: it cannot be verified")
        published = layout.published_model(self.store, self.model_name, expected)
        if io.exists(f"{published}/manifest.json"):
            local = self.store.local_copy(published)
            owned = None if local == Path(published) else local
        else:
            owned = Path(tempfile.mkdtemp(prefix="keel-serving-"))
            local = self.registry.download(self.model_name, version, owned / "model")
        try:
            model = LoadedModel(version, expected, Predictor.load(local, expected, compiled=self.compiled))
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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _cached(self, version: int | None) -> LoadedModel | None:
        current = self.current
        for model in (current.champion, current.challenger) if current else ():
            if model is not None and model.version == version:
                return model
        return None

    def _model(self, version: int) -> LoadedModel:
        return self._cached(version) or self.source.load(version)

    def refresh(self) -> bool:
        """Re-read the aliases and the rollout state; swap in a new snapshot if anything moved."""
        name = self.source.model_name
        champion = self.source.registry.alias_version(name, CHAMPION)
        challenger_alias = self.source.registry.alias_version(name, CHALLENGER)
        state = read_state(self.store_root)
        if champion is None:
            raise LookupError(f"model {name!r} has no {CHAMPION!r} alias yet: train and promote a model first")
        current = self.current
        wanted = state.challenger_version if state.mode != "off" else None
        if (
            current is not None
            and current.champion.version == champion
            and (current.challenger.version if current.challenger else None) == wanted
            and current.state == state
            and current.challenger_alias == challenger_alias
        ):
            return False
        new = Serving(
            champion=self._model(champion),
            challenger=self._model(wanted) if wanted is not None else None,
            state=state,
            challenger_alias=challenger_alias,
        )
        self.current = new  # one assignment: requests read either the old snapshot or this one
        self.reloads += 1
        log.info("serving champion v%s, %s", champion, f"{state.mode} v{wanted}" if wanted else "no challenger")
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                self.last_error = None
            except Exception as error:  # the previous snapshot keeps serving; /metadata shows why
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("model refresh failed: %s", self.last_error)
            self._stop.wait(self.poll_seconds)
