"""A model card per registered version: what the model is, what it may be used for, how it was made.

The card is one JSON document, the union of two schemas where they apply: the SageMaker Model Card
content schema (`model_overview`, `intended_uses`, `training_details`, `evaluation_details`,
`additional_information`) and the Model Card Toolkit's (`model_details`, `model_parameters`,
`quantitative_analysis`, `considerations`), plus what neither has a field for and the project knows
(`training_data`, `gate`, `features`, `drift_reference`, `lineage`, `alias_history`, `cost`).
`render_markdown` and `render_html` present it; `sagemaker_content` is the part SageMaker takes.

Framework-free: the caller gathers the facts (registry tags, gate verdict, holdout scores).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field

from ml.evaluation import binary_metrics
from ml.html_safety import markdown_text as _md

CARD_VERSION = 1
# Holdout metrics with a bootstrap interval; the others are derived or fixed.
INTERVAL_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "f1")


class ModelCardSection(BaseModel):
    """params.yaml `model_card:`: what only a person can say about the model, and the bootstrap's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str | None = Field(
        default=None,
        description="The dataset.name these human fields were written for. When the dataset spec names another "
        "data set, they are not used and its card says they were not provided; unset: they describe any data set.",
    )
    owner: str = Field(default="", description="Who answers for the model.")
    contact: str = Field(default="", description="Where to send questions about it.")
    intended_use: str = Field(default="", description="What the model's scores are for.")
    intended_users: list[str] = Field(default_factory=list, description="Who uses the scores.")
    out_of_scope_uses: list[str] = Field(default_factory=list, description="Uses the model must not be put to.")
    limitations: list[str] = Field(default_factory=list, description="Known limits of the model and its data.")
    ethical_considerations: list[str] = Field(default_factory=list, description="Risks to people, and mitigations.")
    risk_rating: Literal["High", "Medium", "Low", "Unknown"] = Field(
        default="Unknown", description="SageMaker's risk rating of the model."
    )
    bootstrap_resamples: int = Field(default=500, ge=50, description="Resamples of the holdout for each interval.")
    confidence_level: float = Field(default=0.95, gt=0, lt=1, description="Coverage of the intervals.")
    seed: int = 0

    def for_dataset(self, name: str) -> ModelCardSection:
        """The section as a card for data set `name` uses it: the human fields blank when they were written
        for another data set (the shipped example's stay with the example), the bootstrap settings kept."""
        if self.dataset is None or self.dataset == name:
            return self
        kept = {key: getattr(self, key) for key in ("bootstrap_resamples", "confidence_level", "seed")}
        return ModelCardSection(dataset=name, **kept)


NOT_PROVIDED = "not provided"


def bootstrap_intervals(
    labels: np.ndarray, scores: np.ndarray, threshold: float, *, resamples: int, level: float, seed: int
) -> dict[str, dict[str, float]]:
    """Each holdout metric's point estimate and percentile bootstrap interval (rows resampled with replacement).

    A resample with one class only has no AUC; it is drawn again, so every interval has `resamples` values.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    if len(labels) != len(scores) or len(labels) == 0:
        raise ValueError(f"bootstrap needs as many labels as scores, got {len(labels)} and {len(scores)}")
    if len(np.unique(labels)) < 2:
        raise ValueError("bootstrap needs both classes among the holdout labels")
    point = binary_metrics(labels, scores, threshold)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in INTERVAL_METRICS}
    while len(draws["roc_auc"]) < resamples:
        rows = rng.integers(0, len(labels), len(labels))
        if labels[rows].min() == labels[rows].max():
            continue
        values = binary_metrics(labels[rows], scores[rows], threshold)
        for name in INTERVAL_METRICS:
            draws[name].append(values[name])
    tail = (1 - level) / 2 * 100
    return {
        name: {
            "value": point[name],
            "lower": float(np.percentile(draws[name], tail)),
            "upper": float(np.percentile(draws[name], 100 - tail)),
        }
        for name in INTERVAL_METRICS
    }


def label_balance(labels: np.ndarray) -> dict[str, float]:
    labels = np.asarray(labels)
    return {"rows": int(len(labels)), "positive": int(labels.sum()), "positive_rate": float(labels.mean())}


def build_card(
    *,
    model: str,
    version: int,
    created: str,
    description: str,
    family: str,
    hyperparameters: Mapping[str, Any],
    human: ModelCardSection,
    training_data: Mapping[str, Any],
    intervals: Mapping[str, Mapping[str, float]],
    level: float,
    gate: Mapping[str, Any],
    importance: Mapping[str, float],
    plots: Sequence[str],
    drift_reference: Mapping[str, Any],
    lineage: Mapping[str, str],
    alias_history: Sequence[Mapping[str, Any]],
    cost: Mapping[str, Any],
    artifact_uri: str,
) -> dict[str, Any]:
    """The card as one JSON-ready dict (see the module's docstring for its sections)."""
    metrics = [
        {
            "type": name,
            "value": v["value"],
            "slice": "holdout",
            "confidence_interval": {"lower_bound": v["lower"], "upper_bound": v["upper"]},
        }
        for name, v in intervals.items()
    ]
    pct = f"{level:.0%}"
    ranked = sorted(importance.items(), key=lambda kv: -kv[1])
    return {
        "card_version": CARD_VERSION,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # SageMaker Model Card content schema
        "model_overview": {
            "model_name": model,
            "model_version": version,
            "model_description": description,
            "model_owner": human.owner,
            "model_creator": human.owner,
            "problem_type": "Binary Classification",
            "algorithm_type": family,
            "model_artifact": [artifact_uri],
        },
        "intended_uses": {
            "purpose_of_model": human.intended_use,
            "intended_uses": human.intended_use,
            "factors_affecting_model_efficiency": "; ".join(human.limitations),
            "risk_rating": human.risk_rating,
            "explanations_for_risk_rating": "; ".join(human.ethical_considerations),
        },
        "training_details": {
            "objective_function": {"function": {"function": "Minimize", "facet": "Loss", "condition": "log loss"}},
            "training_observations": f"{training_data['train_rows']} train rows, {training_data['holdout_rows']} holdout",
            "training_job_details": {
                "training_datasets": [training_data["data_version"]],
                "training_metrics": [{"name": n, "value": v["value"]} for n, v in intervals.items()],
                "hyper_parameters": [{"name": k, "value": str(v)} for k, v in sorted(hyperparameters.items())],
            },
        },
        "evaluation_details": [
            {
                "name": "holdout",
                "evaluation_observation": gate.get("reason", ""),
                "datasets": [training_data["training_set_version"]],
                "metric_groups": [
                    {
                        "name": "holdout",
                        "metric_data": [
                            {
                                "name": n,
                                "type": "number",
                                "value": v["value"],
                                "notes": f"{pct} bootstrap interval [{v['lower']:.4f}, {v['upper']:.4f}]",
                            }
                            for n, v in intervals.items()
                        ],
                    }
                ],
            }
        ],
        "additional_information": {
            "ethical_considerations": "; ".join(human.ethical_considerations),
            "caveats_and_recommendations": "; ".join(human.limitations),
            "custom_details": {k: str(v) for k, v in lineage.items()},
        },
        # Model Card Toolkit schema
        "model_details": {
            "name": model,
            "overview": description,
            "version": {"name": str(version), "date": created},
            "owners": [{"name": human.owner, "contact": human.contact}],
        },
        "model_parameters": {"model_architecture": family, "input_format": "the dataset spec's columns"},
        "quantitative_analysis": {
            "performance_metrics": metrics,
            "graphics": {"collection": [{"name": p} for p in plots]},
        },
        "considerations": {
            "users": [{"description": u} for u in human.intended_users],
            "use_cases": [{"description": human.intended_use}] if human.intended_use else [],
            "out_of_scope_uses": [{"description": u} for u in human.out_of_scope_uses],
            "limitations": [{"description": u} for u in human.limitations],
            "ethical_considerations": [{"name": u} for u in human.ethical_considerations],
        },
        # What neither schema has a field for
        "training_data": dict(training_data),
        "gate": dict(gate),
        "features": {"importance": dict(ranked)},
        "drift_reference": dict(drift_reference),
        "lineage": dict(lineage),
        "alias_history": [dict(m) for m in alias_history],
        "cost": dict(cost),
    }


SAGEMAKER_SECTIONS = (
    "model_overview",
    "intended_uses",
    "training_details",
    "evaluation_details",
    "additional_information",
)


def sagemaker_content(card: Mapping[str, Any]) -> dict[str, Any]:
    """The sections SageMaker's model card content schema defines, for CreateModelCard's `Content`."""
    content = {key: card[key] for key in SAGEMAKER_SECTIONS}
    overview = dict(content["model_overview"])
    overview["model_version"] = int(overview["model_version"])
    return {**content, "model_overview": overview}


def with_alias_history(card: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The same card with its alias history replaced (an alias moved after registration)."""
    return {**card, "alias_history": [dict(m) for m in history]}


# ---- rendering ------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]


def _not_provided(key: str) -> str:
    return f"{NOT_PROVIDED} (params.yaml `model_card.{key}`)"


def _bullets(items: Sequence[str], key: str) -> list[str]:
    return [f"- {_md(item)}" for item in items] if items else [f"- {_not_provided(key)}"]


def _money(cost: Mapping[str, Any]) -> str:
    if not cost:
        return "not recorded"
    unit = cost.get("unit", "")
    return f"${cost['amount']:.4f}" if unit == "USD" else f"{cost['amount']:.2f} {unit}"


def _ranked(importance: Mapping[str, float]) -> list[tuple[str, float]]:
    """Columns by importance share, largest first (a card read back from JSON has its keys sorted by name)."""
    return sorted(importance.items(), key=lambda kv: -kv[1])


def _gate_line(gate: Mapping[str, Any]) -> str:
    """The gate's verdict once: its reason already starts with it ("passed: AUC ...")."""
    decision, reason = gate.get("decision", "passed"), gate.get("reason", "")
    return reason if reason.startswith(decision) else f"{decision}: {reason}".rstrip(": ")


def render_markdown(card: Mapping[str, Any]) -> str:
    overview, details, data = card["model_overview"], card["model_details"], card["training_data"]
    considerations, gate, lineage = card["considerations"], card["gate"], card["lineage"]
    lines = [
        f"# Model card: {_md(overview['model_name'])} v{_md(overview['model_version'])}",
        "",
        _md(overview["model_description"]),
        "",
        f"- **Owner**: {_md(overview['model_owner']) if overview['model_owner'] else _not_provided('owner')}"
        + (f" ({_md(details['owners'][0]['contact'])})" if details["owners"][0]["contact"] else ""),
        f"- **Algorithm**: {_md(overview['algorithm_type'])} ({_md(overview['problem_type'])})",
        f"- **Registered**: {_md(details['version']['date'])}",
        f"- **Risk rating**: {_md(card['intended_uses']['risk_rating'])}"
        + (f": {_not_provided('risk_rating')}" if card["intended_uses"]["risk_rating"] == "Unknown" else ""),
        "",
        "## Intended use",
        "",
        _md(card["intended_uses"]["purpose_of_model"])
        if card["intended_uses"]["purpose_of_model"]
        else _not_provided("intended_use"),
        "",
        "**Intended users**:",
        *_bullets([u["description"] for u in considerations["users"]], "intended_users"),
        "",
        "**Out of scope**:",
        *_bullets([u["description"] for u in considerations["out_of_scope_uses"]], "out_of_scope_uses"),
        "",
        "**Limitations**:",
        *_bullets([u["description"] for u in considerations["limitations"]], "limitations"),
        "",
        "**Ethical considerations**:",
        *_bullets([u["name"] for u in considerations["ethical_considerations"]], "ethical_considerations"),
        "",
        "## Training data",
        "",
        *_table(
            ["data version", "training set", "partitions", "train rows", "holdout rows", "positive rate (train)"],
            [
                [
                    data["data_version"],
                    data["training_set_version"],
                    data["partitions"],
                    data["train_rows"],
                    data["holdout_rows"],
                    f"{data['label_balance']['positive_rate']:.3f}",
                ]
            ],
        ),
        *(
            [
                "",
                f"**What it learned from**: {data['window_reason']}; judged on the newest labelled days "
                f"{data['evaluation_days'][0]}..{data['evaluation_days'][-1]}, which no window trained on.",
            ]
            if data.get("window") and data.get("evaluation_days")
            else []
        ),
        "",
        "## Evaluation (holdout)",
        "",
        *_table(
            ["metric", "value", "interval (bootstrap)"],
            [
                [
                    m["type"],
                    f"{m['value']:.4f}",
                    f"[{m['confidence_interval']['lower_bound']:.4f}, {m['confidence_interval']['upper_bound']:.4f}]",
                ]
                for m in card["quantitative_analysis"]["performance_metrics"]
            ],
        ),
        "",
        f"**Gate**: {_md(_gate_line(gate))}",
        "",
        "**Previous champion**: "
        + (
            f"v{_md(gate['champion_version'])} (AUC {gate['champion_auc']:.4f} on {_md(gate.get('compared_on', 'the holdout'))})"
            if gate.get("champion_version") is not None and gate.get("champion_auc") is not None
            else "none (first champion)"
        ),
        "",
        "Plots (with the version's MLflow run, `plots/`): "
        + (", ".join(_md(g["name"]) for g in card["quantitative_analysis"]["graphics"]["collection"]) or "none"),
        "",
        "## Features (importance share)",
        "",
        *_table(["column", "share"], [[c, f"{v:.3f}"] for c, v in _ranked(card["features"]["importance"])[:15]]),
        "",
        "## Drift reference",
        "",
        f"{_md(card['drift_reference'].get('rows', '?'))} rows, sha256 {_md(card['drift_reference'].get('sha256', ''))}",
        "",
        "## Lineage",
        "",
        *_table(["", ""], list(lineage.items())),
        "",
        "## Alias history",
        "",
        *(
            _table(
                ["when", "alias", "move", "kind", "reason", "who"],
                [
                    [
                        m["when"],
                        m["alias"],
                        f"v{m['from_version'] if m['from_version'] is not None else '-'} -> v{m['to_version']}",
                        m["kind"],
                        m["reason"],
                        m["actor"],
                    ]
                    for m in card["alias_history"]
                ],
            )
            if card["alias_history"]
            else ["no alias moves yet"]
        ),
        "",
        *_cost_lines(card["cost"]),
    ]
    return "\n".join(lines) + "\n"


def _cost_lines(cost: Mapping[str, Any]) -> list[str]:
    lines = ["## Cost", ""]
    training, scoring = cost.get("training") or {}, cost.get("scoring") or {}
    lines.append(f"- **Training run**: {_money(training)}" + (f" ({_md(training['basis'])})" if training else ""))
    if scoring:
        lines.append(f"- **Scoring runs so far**: {scoring['runs']} runs, {_money(scoring)}")
    calendar = cost.get("calendar")
    if calendar:
        unit = calendar["unit"]
        lines += [
            f"- **Retraining on drift vs a weekly calendar** since {calendar['since'][:10]} ({calendar['days']} days): "
            f"{calendar['retrains']} retrains = {calendar['retrains_cost']:.4g} {unit}, against "
            f"{calendar['weekly_retrains']} weekly retrains = {calendar['weekly_calendar_cost']:.4g} {unit} "
            f"({calendar['arithmetic']}; the mean cost of this model's training runs)",
        ]
    return lines


def render_html(card: Mapping[str, Any], plots: Mapping[str, bytes] | None = None) -> str:
    """The Markdown as a self-contained HTML page, with the plots inlined."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(render_markdown(card))
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in (plots or {}).items()
    )
    title = html.escape(f"{card['model_overview']['model_name']} v{card['model_overview']['model_version']}")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
        "figure{display:inline-block;margin:.5rem}img{max-width:28rem}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Model card: {title}</title>'
        f"<style>{style}</style></head><body>{body}{images}</body></html>\n"
    )


def side_by_side(challenger: Mapping[str, Any], champion: Mapping[str, Any] | None) -> str:
    """A Markdown table setting a challenger's card beside the champion's: what an approver compares."""

    def facts(card: Mapping[str, Any] | None) -> dict[str, str]:
        if card is None:
            return {}
        metrics = {m["type"]: m for m in card["quantitative_analysis"]["performance_metrics"]}
        row = {
            "version": f"v{card['model_overview']['model_version']}",
            "algorithm": card["model_overview"]["algorithm_type"],
            "registered": card["model_details"]["version"]["date"],
            "data version": card["training_data"]["data_version"],
            "partitions": card["training_data"]["partitions"],
            "train rows": str(card["training_data"]["train_rows"]),
            "gate": card["gate"].get("reason", ""),
        }
        for name, m in metrics.items():
            ci = m["confidence_interval"]
            row[f"holdout {name}"] = f"{m['value']:.4f} [{ci['lower_bound']:.4f}, {ci['upper_bound']:.4f}]"
        top = list(card["features"]["importance"])[:3]
        row["top features"] = ", ".join(top)
        row["training cost"] = _money(card["cost"].get("training") or {})
        row["git commit"] = card["lineage"].get("git_commit", "")[:12]
        return row

    new, old = facts(challenger), facts(champion)
    keys = list(dict.fromkeys([*new, *old]))
    header = ["", "challenger", "champion" if champion is not None else "champion (none)"]
    return "\n".join(_table(header, [[k, new.get(k, ""), old.get(k, "")] for k in keys])) + "\n"
