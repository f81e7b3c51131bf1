"""Fakes the cloud tests share: moto on a free loopback port for S3 and SageMaker, and how to find Azurite.

Each backend's own fakes (a Vertex or Azure ML loopback server, the GCS emulator) live in its test
file or in `tests/cloud/<backend>_fakes.py`; what several of them need is here.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

AWS_TEST_ENV = {
    # moto accepts any credentials; these are placeholders, never real ones.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
AZURITE_BLOB = REPO / ".tools" / "node" / "node_modules" / ".bin" / "azurite-blob"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server (S3, SageMaker, ...) on a free 127.0.0.1 port for the whole test session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A clean moto account: boto3 and s3fs reach it through AWS_ENDPOINT_URL. Yields the variables set."""
    import s3fs

    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_endpoint}
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # cached listings would outlive the reset
    yield env
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def bucket(aws: dict[str, str]) -> str:
    """An empty bucket in the clean moto account."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="keel-test")
    return "keel-test"


def azurite_blob() -> Path:
    """The project-local Azurite (`make emulators`). Missing: a clear failure in CI, a skip elsewhere."""
    if AZURITE_BLOB.exists():
        return AZURITE_BLOB
    message = f"Azurite is not installed at {AZURITE_BLOB.relative_to(REPO)}: run `make emulators` (needs node and npm)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)
