"""Where a version's model card is kept: with the version in MLflow, as a page in the artifact store, on SageMaker.

- MLflow: `model_card/model_card.{json,md,html}` in the version's run, beside `model/`, and the
  version tags `keel.model_card_sha256` (of the JSON) and `keel.model_card_url`;
- the artifact store: `cards/<model>/v<version>.html` and `.json`, which the browser link opens
  (KEEL_REPORTS_URL locally, the cloud console otherwise);
- SageMaker (KEEL_DEPLOYMENT=aws, whose artifacts are on S3): a model card `<model>-v<version>` (CreateModelCard, then
  UpdateModelCard when an alias moves) holding the SageMaker schema's sections of the card.

A card is written whole each time: the alias history is refreshed by writing the card again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
import mlflow
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

import ml.io
from ml.model_card import render_html, render_markdown, sagemaker_content
from resources import layout
from resources.registry import ModelRegistry
from resources.storage import ArtifactStore

CARD_PATH = "model_card"  # in the version's MLflow run
CARD_FILE = "model_card.json"
CARD_TAG, CARD_URL_TAG = "keel.model_card_sha256", "keel.model_card_url"


def sagemaker_card_name(model: str, version: int) -> str:
    """`<model>-v<version>` in the characters a SageMaker model card name allows."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-zA-Z0-9-]", "-", f"{model}-v{version}")).strip("-")[:63]


def keep_replaced_card(storage: ArtifactStore, name: str, version: int, run_id: str | None) -> str | None:
    """A stored card of another model that had this version number (a registry replaced or moved, its
    numbers starting again) is kept beside it as `v<version>.replaced-<its run>.{json,html}`, never
    overwritten; returns the kept JSON's URI, or None when there was nothing of another run to keep."""
    current = layout.model_card(storage, name, version, "json")
    if run_id is None or not ml.io.exists(current):
        return None
    try:
        previous = ml.io.read_json(current).get("lineage", {}).get("mlflow_run_id")
    except (OSError, ValueError, AttributeError):  # unreadable: keep it under a name of its own too
        previous = "unreadable"
    if previous in (None, run_id):
        return None
    kept = None
    for suffix in ("json", "html"):
        source = layout.model_card(storage, name, version, suffix)
        if ml.io.exists(source):
            target = f"{source.removesuffix('.' + suffix)}.replaced-{previous}.{suffix}"
            with ml.io.atomic_output(target) as tmp, fsspec.open(source, "rb") as handle:
                tmp.write_bytes(handle.read())
            kept = kept or target
    return kept


def publish_card(
    registry: ModelRegistry,
    storage: ArtifactStore,
    card: Mapping[str, Any],
    plots: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write the card everywhere it is kept; returns its sha256, page link and SageMaker ARN (if any)."""
    name, version = card["model_overview"]["model_name"], int(card["model_overview"]["model_version"])
    document = json.dumps(card, indent=2, sort_keys=True, default=str)
    digest = hashlib.sha256(document.encode()).hexdigest()
    page = render_html(card, plots)
    keep_replaced_card(storage, name, version, card.get("lineage", {}).get("mlflow_run_id"))
    for suffix, text in (("json", document), ("html", page)):  # each file replaced in one step
        with ml.io.atomic_output(layout.model_card(storage, name, version, suffix)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    link = storage.browser_url(layout.model_card(storage, name, version, "html")) or layout.model_card(
        storage, name, version, "html"
    )
    client = registry.client()
    run_id = registry.version_info(name, version)["run_id"]
    with tempfile.TemporaryDirectory(prefix="keel-card-") as tmp:
        folder = Path(tmp)
        (folder / CARD_FILE).write_text(document, encoding="utf-8")
        (folder / "model_card.md").write_text(render_markdown(card), encoding="utf-8")
        (folder / "model_card.html").write_text(page, encoding="utf-8")
        # By the run's artifact URI as stored now (MLflow's per-run repository cache can outlive a moved store).
        get_artifact_repository(client.get_run(run_id).info.artifact_uri).log_artifacts(str(folder), CARD_PATH)
    client.set_model_version_tag(name, str(version), CARD_TAG, digest)
    client.set_model_version_tag(name, str(version), CARD_URL_TAG, link)
    # Artifacts on S3 are the AWS deployment's (orchestration/deployments.py): its cards go to SageMaker too.
    arn = publish_sagemaker_card(card) if storage.root.startswith("s3://") else None
    return {"sha256": digest, "url": link, **({"sagemaker_model_card_arn": arn} if arn else {})}


def read_card(registry: ModelRegistry, name: str, version: int) -> dict[str, Any] | None:
    """The card stored with the version in MLflow, checked against its tag; None for a version without one."""
    info = registry.version_info(name, version)
    expected = info["tags"].get(CARD_TAG)
    if not expected:
        return None
    with tempfile.TemporaryDirectory(prefix="keel-card-") as tmp:
        root = registry.client().get_run(info["run_id"]).info.artifact_uri
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{root}/{CARD_PATH}/{CARD_FILE}", dst_path=tmp, tracking_uri=registry.uri()
        )
        text = Path(local).read_text(encoding="utf-8")
    if hashlib.sha256(text.encode()).hexdigest() != expected:
        raise ValueError(f"model {name!r} v{version}: the stored model card does not match {CARD_TAG}")
    return json.loads(text)


def sagemaker_client() -> Any:
    import boto3  # only on AWS; region and endpoint as the SageMaker compute backend reads them

    endpoint = os.environ.get("KEEL_SAGEMAKER_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return boto3.client("sagemaker", region_name=region, endpoint_url=endpoint)


def publish_sagemaker_card(card: Mapping[str, Any], client: Any = None) -> str:
    """Create the version's SageMaker model card, or update its content when it exists; its ARN."""
    client = client or sagemaker_client()
    name = sagemaker_card_name(card["model_overview"]["model_name"], int(card["model_overview"]["model_version"]))
    content = json.dumps(sagemaker_content(card), default=str)
    try:
        return client.create_model_card(ModelCardName=name, Content=content, ModelCardStatus="Draft")["ModelCardArn"]
    except client.exceptions.ConflictException:
        return client.update_model_card(ModelCardName=name, Content=content)["ModelCardArn"]
