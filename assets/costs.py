"""The cost of a run's entry point as materialization metadata: what the process and the platform measured, priced."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from ml.cost import run_cost
from ml.params import Params
from resources.cloud_job import JOB_USAGE
from resources.registry import ModelRegistry

COST_TAG = "keel.cost"  # keel.cost.amount / .unit / .basis on the candidate's run and the version
SCORING_COST_TAG = "keel.cost.scoring."  # + day: that day's latest scoring run, on the version that scored it


def invocation_cost(
    invocation: dg.PipesClientCompletedInvocation, settings: Params, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The entry point's own usage (its report's `usage`, or `usage` when given: e.g. a sharded day's
    processes summed) and, on a cloud backend, the job's, priced by `costs:`."""
    metadata = invocation.get_materialize_result().metadata
    job = metadata[JOB_USAGE].value if JOB_USAGE in metadata else None
    return run_cost(usage if usage is not None else metadata["report"].value.get("usage"), job, settings.costs)


def cost_metadata(cost: dict[str, Any]) -> dict[str, Any]:
    """`cost` (the figure in its unit) first, then every term it was worked out from."""
    return {
        "cost": dg.MetadataValue.float(float(cost["amount"])),
        "cost_unit": cost["unit"],
        "cost_basis": cost["basis"],
        "cpu_seconds": dg.MetadataValue.float(float(cost.get("cpu_seconds", 0.0))),
        "cost_details": dg.MetadataValue.json(cost),
    }


def cost_tags(cost: dict[str, Any]) -> dict[str, str]:
    return {
        f"{COST_TAG}.amount": f"{cost['amount']:.6f}",
        f"{COST_TAG}.unit": cost["unit"],
        f"{COST_TAG}.basis": cost["basis"],
    }


def record_scoring_cost(registry: ModelRegistry, model: str, version: int, day: str, cost: dict[str, Any]) -> None:
    """Tag the version with the day's scoring cost, so its model card sums what scoring with it cost."""
    value = json.dumps({"amount": cost["amount"], "unit": cost["unit"]})
    registry.client().set_model_version_tag(model, str(version), f"{SCORING_COST_TAG}{day}", value)
