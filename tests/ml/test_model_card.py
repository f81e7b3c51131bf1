"""The model card: bootstrap intervals around the holdout metrics, its sections, and how it renders."""

import numpy as np
import pytest

from ml.html_safety import markdown_text
from ml.model_card import (
    ModelCardSection,
    bootstrap_intervals,
    build_card,
    label_balance,
    render_html,
    render_markdown,
    sagemaker_content,
    side_by_side,
)


def holdout(rows: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    return labels, np.clip(0.35 * labels + 0.65 * rng.random(rows), 0, 1)


def test_each_interval_contains_its_point_estimate_and_is_reproducible():
    labels, scores = holdout()
    first = bootstrap_intervals(labels, scores, 0.5, resamples=100, level=0.95, seed=3)
    assert first == bootstrap_intervals(labels, scores, 0.5, resamples=100, level=0.95, seed=3)
    for name, interval in first.items():
        assert interval["lower"] <= interval["value"] <= interval["upper"], name
        assert interval["lower"] < interval["upper"], name
    wider = bootstrap_intervals(labels, scores, 0.5, resamples=100, level=0.99, seed=3)["roc_auc"]
    assert wider["upper"] - wider["lower"] > first["roc_auc"]["upper"] - first["roc_auc"]["lower"]


def test_a_holdout_with_one_class_has_no_interval():
    with pytest.raises(ValueError, match="both classes"):
        bootstrap_intervals(np.ones(50), np.random.default_rng(0).random(50), 0.5, resamples=50, level=0.9, seed=0)


def card(
    version: int = 2, auc_shift: float = 0.0, human: ModelCardSection | None = None, gate: dict | None = None
) -> dict:
    labels, scores = holdout()
    intervals = bootstrap_intervals(labels, scores, 0.5, resamples=60, level=0.95, seed=0)
    intervals["roc_auc"] = {k: v + auc_shift for k, v in intervals["roc_auc"].items()}
    human = human or ModelCardSection(
        intended_use="rank churn risk", out_of_scope_uses=["credit decisions"], risk_rating="Low"
    )
    return build_card(
        model="telco_churn",
        version=version,
        created="2026-12-03T10:00:00+00:00",
        description="passed the gate",
        family="lightgbm",
        hyperparameters={"num_leaves": 8},
        human=human,
        training_data={
            "data_version": "abc123",
            "training_set_version": "ts1",
            "partitions": "day|one",
            "train_rows": 5000,
            "holdout_rows": 600,
            "label_balance": label_balance(labels),
        },
        intervals=intervals,
        level=0.95,
        gate=gate or {"decision": "passed", "reason": "AUC 0.85 >= 0.80", "champion_version": 1, "champion_auc": 0.84},
        importance={"tenure": 0.6, "monthly_charges": 0.4},
        plots=["roc"],
        drift_reference={"sha256": "f00", "rows": 600},
        lineage={"git_commit": "deadbeef" * 5, "manifest_sha256": "m" * 64},
        alias_history=[],
        cost={"training": {"amount": 2.5, "unit": "cpu_seconds", "basis": "local CPU-seconds"}},
        artifact_uri="file:///mlruns/model",
    )


def test_the_card_carries_both_schemas_and_renders():
    made = card()
    assert made["model_details"]["version"]["name"] == "2" and made["model_overview"]["model_version"] == 2
    ci = made["quantitative_analysis"]["performance_metrics"][0]["confidence_interval"]
    assert ci["lower_bound"] <= made["quantitative_analysis"]["performance_metrics"][0]["value"] <= ci["upper_bound"]
    assert set(sagemaker_content(made)) == {
        "model_overview",
        "intended_uses",
        "training_details",
        "evaluation_details",
        "additional_information",
    }
    markdown = render_markdown(made)
    assert markdown.startswith("# Model card: telco_churn v2")
    assert "day\\|one" in markdown  # a pipe in a value does not split the table cell
    assert "v1 (AUC 0.8400" in markdown and "2.50 cpu_seconds" in markdown
    page = render_html(made, {"roc": b"\x89PNG"})
    assert "<table>" in page and "data:image/png;base64," in page and "<script" not in page


def test_an_approver_sees_the_challenger_beside_the_champion():
    table = side_by_side(card(2), card(1, auc_shift=-0.05))
    assert "| version | v2 | v1 |" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()}
    assert rows["holdout roc_auc"].count("[") == 2  # each side with its interval
    alone = side_by_side(card(2), None)
    assert "champion (none)" in alone


def test_the_examples_human_fields_stay_with_the_example():
    example = ModelCardSection(dataset="telco_churn", owner="team:x", intended_use="rank churn risk", seed=4)
    assert example.for_dataset("telco_churn") == example
    other = example.for_dataset("credit")
    assert (other.owner, other.intended_use, other.out_of_scope_uses, other.seed) == ("", "", [], 4)
    assert ModelCardSection(owner="team:y").for_dataset("credit").owner == "team:y"  # unset dataset: any data set
    markdown = render_markdown(card(human=other))
    assert "rank churn risk" not in markdown and "credit decisions" not in markdown
    for key in ("owner", "intended_use", "intended_users", "out_of_scope_uses", "limitations", "risk_rating"):
        assert f"not provided (params.yaml `model_card.{key}`)" in markdown, key


def test_the_gate_line_states_the_verdict_once():
    reason = "passed: AUC 0.8500 >= minimum 0.8000 (gate.min_auc; best single column tenure 0.7400)"
    markdown = render_markdown(card(gate={"decision": "passed", "reason": reason}))
    # The reason is literal Markdown (its ">=" escaped), once, after the label.
    assert f"**Gate**: {markdown_text(reason)}\n" in markdown and "passed: passed" not in markdown
