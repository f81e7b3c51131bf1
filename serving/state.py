"""The rollout state: which arms the endpoint serves, as one JSON file in the artifact store.

    <artifact store root>/serving/rollout.json
    {"mode": "off" | "canary" | "shadow", "challenger_version": int | null, "canary_percent": 0..100,
     "since": ISO-8601 UTC, "reason": str, "decided_by": str}

`off` serves only the champion (the registry's `champion` alias); `canary` sends `canary_percent` of
the requests (sticky by request id) to the challenger (the `challenger` alias) and returns its
score; `shadow` also scores every request with the challenger but never returns its score. The
server polls this file; whoever decides a rollout writes it, all-or-nothing (ml.io.write_json).
A missing file means `off`.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ml import io

STATE_FILE = "rollout.json"
Mode = Literal["off", "canary", "shadow"]


class RolloutStateError(ValueError):
    """The rollout file cannot be used; the message names the file and the key at fault."""


class RolloutState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "off"
    challenger_version: int | None = Field(default=None, ge=1)
    canary_percent: float = Field(default=0.0, ge=0, le=100)
    since: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    reason: str = ""
    decided_by: str = ""

    @field_validator("since")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError(f"since must carry a UTC offset (e.g. 2026-12-03T16:00:00+00:00), got {value.isoformat()}")
        return value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _challenger_when_needed(self) -> RolloutState:
        if self.mode != "off" and self.challenger_version is None:
            raise ValueError(f"mode {self.mode!r} needs a challenger_version")
        return self

    def to_dict(self) -> dict:
        return {**self.model_dump(), "since": self.since.isoformat()}


def serving_uri(store_root: str, *parts: str) -> str:
    """A path under the artifact store's `serving/` folder (store_root: ArtifactStore.root)."""
    base = store_root.rstrip("/")
    joined = "/".join([base, "serving", *parts])
    return joined if io.is_remote(base) else io.resolve(joined)


def state_uri(store_root: str) -> str:
    return serving_uri(store_root, STATE_FILE)


def parse_state(document: object, origin: str = STATE_FILE) -> RolloutState:
    if not isinstance(document, dict):
        raise RolloutStateError(f"{origin}: expected a JSON object, got {type(document).__name__}")
    try:
        return RolloutState.model_validate(document)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        ]
        raise RolloutStateError(f"{origin}: {'; '.join(problems)}") from None


_NO_ROLLOUT: RolloutState | None = None


def read_state(store_root: str) -> RolloutState:
    """The current rollout state; `off` (the same value every time, since this process first asked) when
    no rollout was ever written."""
    global _NO_ROLLOUT
    uri = state_uri(store_root)
    if not io.exists(uri):
        if _NO_ROLLOUT is None:
            _NO_ROLLOUT = RolloutState(mode="off", reason="no rollout state written yet", decided_by="default")
        return _NO_ROLLOUT
    return parse_state(io.read_json(uri), uri)


def write_state(store_root: str, state: RolloutState) -> str:
    """Replace the rollout state in one step; readers see the previous file or this one."""
    uri = state_uri(store_root)
    io.write_json(state.to_dict(), uri)
    return uri


def reconcile(
    state: RolloutState, champion: int | None, challenger_alias: int | None
) -> tuple[RolloutState, str | None]:
    """The rollout state as the registry's aliases allow it, and why it was overruled (None when it was not).

    The registry is the truth: a rollout whose challenger has become the champion, or no longer holds
    the `challenger` alias, is over, whatever the file says; the champion then answers alone.
    """
    if state.mode == "off":
        return state, None
    version = state.challenger_version
    if version == champion:
        why = f"rollout.json runs a {state.mode} of v{version}, but v{version} is the registry's champion: the {state.mode} is over"
    elif challenger_alias != version:
        holder = f"v{challenger_alias}" if challenger_alias is not None else "unset"
        why = (
            f"rollout.json runs a {state.mode} of v{version}, but the registry's challenger alias is {holder}: "
            f"the {state.mode} is over"
        )
    else:
        return state, None
    return RolloutState(mode="off", since=state.since, reason=why, decided_by="the registry's aliases"), why
