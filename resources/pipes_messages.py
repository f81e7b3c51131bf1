"""What the cloud backends share about Pipes message readers."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class KeyPrefixedMessages:
    """Mixin for an object-store Pipes message reader (S3, GCS): its message chunks go under `key_prefix`
    in the bucket (the deployment's pipes folder), not at the bucket's top."""

    def __init__(self, *, key_prefix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key_prefix = key_prefix.strip("/")

    @contextmanager
    def get_params(self) -> Iterator[dict[str, Any]]:
        with super().get_params() as params:  # type: ignore[misc]
            yield {**params, "key_prefix": f"{self.key_prefix}/{params['key_prefix']}".lstrip("/")}
