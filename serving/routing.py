"""Which arm scores a request: sticky by a hash of its request id, so a retried id meets the same model."""

from __future__ import annotations

import hashlib

from serving.state import RolloutState

CHAMPION, CANARY, SHADOW = "champion", "canary", "shadow"
_BUCKETS = 2**64


def bucket(request_id: str) -> float:
    """The request id's place in [0, 100): uniform over ids, fixed per id (not Python's per-process hash())."""
    digest = hashlib.blake2b(request_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") * 100.0 / _BUCKETS


def served_arm(request_id: str, state: RolloutState) -> str:
    """`canary` for the canary's share of ids while a canary runs, else `champion`."""
    if state.mode == "canary" and bucket(request_id) < state.canary_percent:
        return CANARY
    return CHAMPION
