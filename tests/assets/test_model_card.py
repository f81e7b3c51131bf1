"""A registered version's model card against the registry and the lineage, its costs, and approve's comparison."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.batch_predictions import batch_predictions
from assets.candidate_model import candidate_model
from assets.cards import version_costs
from assets.registered_model import registered_model
from orchestration.deployments import local
from orchestration.promotion import approve
from resources import layout
from resources.model_cards import CARD_URL_TAG, read_card
from resources.registry import MANIFEST_TAG, ModelRegistry
from tests.cloud.scoring import cloud_day, score_day
from tests.conftest import set_params, train

MODEL = "telco_churn"
SEED_7 = {"ops": {"candidate_model": {"config": {"seed": 7}}}}


@pytest.fixture
def instance(trained_project: Path):
    with dg.DagsterInstance.from_config(str(trained_project / "var" / "dagster")) as inst:
        yield inst


def latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_a_registered_version_has_a_card_that_matches_its_lineage(trained_project, instance):
    set_params(trained_project, registry={"promotion": "manual"})
    resources = local(trained_project)
    registry: ModelRegistry = resources["registry"]
    result = train(trained_project, instance, SEED_7)
    assert result.success
    version = registry.alias_version(MODEL, "challenger")
    info = registry.version_info(MODEL, version)
    tags = info["tags"]

    card = read_card(registry, MODEL, version)
    lineage = card["lineage"]
    assert lineage["data_version"] == tags["keel.data_version"] == card["training_data"]["data_version"]
    assert lineage["manifest_sha256"] == tags[MANIFEST_TAG]
    assert lineage["training_dagster_run_id"] == tags["keel.training_dagster_run_id"] == result.run_id
    assert lineage["mlflow_run_id"] == info["run_id"]
    assert lineage["git_commit"] == tags["keel.git_commit"] and lineage["code_version"] == tags["keel.code_version"]
    assert card["model_overview"]["model_version"] == version
    # The holdout metrics are the registry's, each inside its bootstrap interval.
    metrics = {m["type"]: m for m in card["quantitative_analysis"]["performance_metrics"]}
    for name, metric in metrics.items():
        assert metric["value"] == pytest.approx(float(tags[f"keel.metric.{name}"]), abs=1e-6), name
        interval = metric["confidence_interval"]
        assert interval["lower_bound"] <= metric["value"] <= interval["upper_bound"], name
    assert card["gate"]["champion_version"] == 1 and card["gate"]["reason"] == info["description"]
    assert [m["alias"] for m in card["alias_history"]] == ["challenger"]
    assert sum(card["features"]["importance"].values()) == pytest.approx(1.0)

    # The training run's cost: the entry point's CPU-seconds, on the candidate and on the card.
    candidate = latest(instance, candidate_model.key)
    assert candidate["cost_unit"] == "cpu_seconds" and candidate["cost"] > 0
    assert card["cost"]["training"]["amount"] == pytest.approx(candidate["cost"], abs=1e-6)
    assert card["cost"]["calendar"]["retrains"] == 1  # v1, then this retrain

    # Shown on registered_model (Markdown and a link) and kept as a page in the artifact store.
    registered = latest(instance, registered_model.key)
    assert registered["model_card"].startswith(f"# Model card: {MODEL} v{version}")
    assert registered["model_card_url"] == tags[CARD_URL_TAG]
    page = Path(layout.model_card(resources["storage"], MODEL, version, "html")).read_text()
    assert "<table>" in page and tags[MANIFEST_TAG] in page

    # approve sets the challenger's card beside the champion's, then both cards record the move.
    config = {"ops": {"approve_challenger": {"config": {"reason": "reviewed the cards"}}}}
    approved = approve.execute_in_process(run_config=config, resources=resources, instance=instance)
    assert approved.success
    moved = latest(instance, registered_model.key)
    assert f"| version | v{version} | v1 |" in moved["cards_side_by_side"]
    assert [m["kind"] for m in read_card(registry, MODEL, version)["alias_history"]] == ["promote", "approve"]
    old = read_card(registry, MODEL, 1)["alias_history"]
    assert old[-1]["from_version"] == 1 and old[-1]["to_version"] == version


def test_a_scored_day_records_its_cost_and_the_version_sums_it(trained_project, instance):
    resources = local(trained_project)
    cloud_day(trained_project, str(trained_project / "data" / "elsewhere"))  # day 1, written locally
    result = score_day(trained_project, instance, resources)
    assert result.success
    scored = latest(instance, batch_predictions.key)
    assert scored["cost_unit"] == "cpu_seconds" and scored["cost"] > 0
    assert scored["cost_details"]["wall_seconds"] > 0
    costs = version_costs(resources["registry"], MODEL, scored["model_version"])
    assert costs["scoring"] == {"runs": 1, "amount": pytest.approx(scored["cost"], abs=1e-6), "unit": "cpu_seconds"}


def test_the_weekly_calendar_is_set_against_the_days_the_model_scored_not_the_wall_clock():
    import datetime as dt

    from assets.cards import _period
    from assets.costs import SCORING_COST_TAG

    cost = '{"amount": 1.0, "unit": "cpu_seconds"}'
    infos = [
        {"created": "2026-12-03T17:40:00+00:00", "tags": {f"{SCORING_COST_TAG}2026-11-21": cost}},
        {"created": "2026-12-03T17:42:00+00:00", "tags": {f"{SCORING_COST_TAG}2026-11-03": cost, "other": "x"}},
    ]
    start, end = _period(infos)  # a simulated month scored in minutes: its days, not the minutes
    assert (start.date(), end.date()) == (dt.date(2026, 11, 3), dt.date(2026, 11, 22))
    unscored = [{"created": "2026-12-01T00:00:00+00:00", "tags": {}}]
    start, end = _period(unscored)
    assert start == dt.datetime(2026, 12, 1, tzinfo=dt.UTC) and end > start
