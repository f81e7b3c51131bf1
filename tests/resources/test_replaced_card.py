"""A model card of a replaced registry's version is kept, not overwritten, when a new model takes its number."""

from __future__ import annotations

import json
from pathlib import Path

from resources import layout
from resources.model_cards import keep_replaced_card
from resources.storage import ArtifactStore


def _card(store: ArtifactStore, run: str, text: str) -> None:
    for suffix, body in (("json", json.dumps({"lineage": {"mlflow_run_id": run}, "text": text})), ("html", text)):
        path = Path(layout.model_card(store, "churn", 1, suffix))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")


def test_a_card_of_another_run_with_the_same_version_is_kept_beside_it(tmp_path):
    store = ArtifactStore(root=str(tmp_path))
    _card(store, "run-old", "the first registry's v1")
    kept = keep_replaced_card(store, "churn", 1, "run-new")
    assert kept is not None and kept.endswith("v1.replaced-run-old.json")
    assert json.loads(Path(kept).read_text())["text"] == "the first registry's v1"
    assert Path(kept.replace(".json", ".html")).read_text() == "the first registry's v1"


def test_the_same_runs_card_is_rewritten_in_place_with_nothing_kept(tmp_path):
    store = ArtifactStore(root=str(tmp_path))
    _card(store, "run-a", "v1")
    assert keep_replaced_card(store, "churn", 1, "run-a") is None
    assert keep_replaced_card(store, "churn", 2, "run-a") is None  # no card for v2 yet
    assert not list(Path(tmp_path).rglob("*.replaced-*"))
