"""How an entry point reports back: through Dagster Pipes when Dagster started it, else on stdout.

The entry points call `reporter()` once. Under Pipes, logs and the final report become Dagster log
lines and the asset's materialization metadata; started by hand, logs go to stderr and the report is
printed as JSON, so scripts and notebooks can read it. Known input errors end the process with a
one-line message (exit code 1) instead of a traceback.

How the Pipes context arrives and where messages go is picked by `KEEL_PIPES_TRANSPORT`, which the
compute backend sets in the job's environment: unset means Dagster's defaults (environment variable
or file, as for a local subprocess); `s3` reads the context from and writes messages to S3 (a
SageMaker job); `gcs` in Cloud Storage (a Vertex AI job); `azureblob` does the same in Azure Blob
Storage (an Azure ML job). Each transport is one small function in `TRANSPORTS`; its client
libraries are imported only when it is picked, so the local path needs none of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from dagster_pipes import (
    PipesAzureBlobStorageContextLoader,
    PipesAzureBlobStorageMessageWriter,
    PipesContextLoader,
    PipesEnvVarParamsLoader,
    PipesGCSContextLoader,
    PipesGCSMessageWriter,
    PipesMessageWriter,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    open_dagster_pipes,
)

from ml.cost import process_usage

# Errors that describe bad input or configuration; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError)


TRANSPORT_VARIABLE = "KEEL_PIPES_TRANSPORT"
# Seconds between message uploads to an object store; the last chunk is always uploaded at exit.
MESSAGE_INTERVAL_VARIABLE = "KEEL_PIPES_MESSAGE_INTERVAL"

Transport = tuple[PipesContextLoader, PipesMessageWriter]


def _message_interval() -> float:
    raw = os.environ.get(MESSAGE_INTERVAL_VARIABLE, "5")
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{MESSAGE_INTERVAL_VARIABLE}={raw!r} is not a number of seconds") from None


def _s3() -> Transport:
    import boto3  # credentials, region and AWS_ENDPOINT_URL come from the job's environment

    client = boto3.client("s3")
    return PipesS3ContextLoader(client), PipesS3MessageWriter(client, interval=_message_interval())


AZURE_ACCOUNT_URL_VARIABLE = "KEEL_AZURE_STORAGE_ACCOUNT_URL"


def _azureblob() -> Transport:
    from azure.storage.blob import BlobServiceClient

    # A connection string (Azurite, development) wins; on Azure ML the compute's managed identity
    # (DefaultAzureCredential; AZURE_CLIENT_ID picks a user-assigned one) reaches the account URL.
    connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "").strip()
    if connection:
        client = BlobServiceClient.from_connection_string(connection)
    else:
        url = os.environ.get(AZURE_ACCOUNT_URL_VARIABLE, "").strip()
        if not url:
            raise ValueError(
                f"{TRANSPORT_VARIABLE}=azureblob needs {AZURE_ACCOUNT_URL_VARIABLE} (or AZURE_STORAGE_CONNECTION_STRING)"
            )
        from azure.identity import DefaultAzureCredential

        client = BlobServiceClient(url, credential=DefaultAzureCredential())
    writer = PipesAzureBlobStorageMessageWriter(client, interval=_message_interval())
    return PipesAzureBlobStorageContextLoader(client), writer


def _gcs() -> Transport:
    from google.cloud import storage

    # The job's service account (Application Default Credentials); STORAGE_EMULATOR_HOST for an emulator.
    client = storage.Client()
    return PipesGCSContextLoader(client), PipesGCSMessageWriter(client, interval=_message_interval())


# KEEL_PIPES_TRANSPORT value -> (context loader, message writer). One entry per object store.
TRANSPORTS: dict[str, Callable[[], Transport]] = {"s3": _s3, "azureblob": _azureblob, "gcs": _gcs}


def transport() -> Transport | tuple[None, None]:
    """The context loader and message writer KEEL_PIPES_TRANSPORT names; (None, None) for Dagster's defaults."""
    name = os.environ.get(TRANSPORT_VARIABLE, "").strip()
    if not name:
        return None, None
    if name not in TRANSPORTS:
        known = ", ".join(sorted(TRANSPORTS))
        raise ValueError(f"{TRANSPORT_VARIABLE}={name!r} is not a known Pipes transport; known: {known} (or unset)")
    return TRANSPORTS[name]()


class Reporter:
    def __init__(self, pipes: Any | None) -> None:
        self.pipes = pipes
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        if self.pipes is not None:
            self.pipes.log.info(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def materialization(self, report: dict[str, Any], data_version: str | None = None) -> None:
        report = {**report, "usage": process_usage(self.started)}  # what the run cost, measured at its end
        if self.pipes is not None:
            metadata = {"report": {"raw_value": report, "type": "json"}}
            self.pipes.report_asset_materialization(metadata=metadata, data_version=data_version)
        else:
            print(json.dumps(report, indent=2, sort_keys=True), flush=True)


@contextlib.contextmanager
def reporter(pipes: bool = True) -> Iterator[Reporter]:
    """`pipes=False`: report on stdout/stderr even under Pipes (a process that must not share the channel)."""
    if pipes and PipesEnvVarParamsLoader().is_dagster_pipes_process():
        context_loader, message_writer = transport()
        with open_dagster_pipes(context_loader=context_loader, message_writer=message_writer) as pipes:
            try:
                yield Reporter(pipes)
            except USER_ERRORS as error:
                pipes.log.error(f"error: {error}")  # the one line a user needs, in Dagster's run log
                raise
        return
    try:
        yield Reporter(None)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
