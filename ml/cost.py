"""What a training or scoring run cost, from what the process or the platform measured.

Locally the entry point reports its own CPU-seconds (user + system, from getrusage) and wall time;
nothing is priced, because a laptop's hour has no list price. A cloud job is priced from params.yaml
`costs:` (USD per instance-hour, list prices of a stated date):

- SageMaker: BillableTimeInSeconds x InstanceCount x price; the spot saving is
  1 - BillableTimeInSeconds / TrainingTimeInSeconds (both from DescribeTrainingJob);
- Vertex AI and Azure ML: the job's duration x replicas x the machine type's price, an estimate
  (neither platform returns a billed time for a job).

A type without a price in the table is recorded in instance-seconds, its basis naming the type:
the job has run by then, and its result is worth more than a complete price list.

`calendar_comparison` sets the retrains a model name had against a weekly retraining calendar over
the same days, at the same mean cost per retrain.
"""

from __future__ import annotations

import datetime as dt
import math
import resource
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LOCAL_UNIT, USD, UNPRICED_UNIT = "cpu_seconds", "USD", "instance_seconds"


class CostsSection(BaseModel):
    """params.yaml `costs:`: the price table the cloud runs are priced with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prices_as_of: dt.date = Field(default=dt.date(2026, 12, 1), description="The date the list prices below were read.")
    price_source: str = Field(
        default="on-demand list prices, us-east-1 / us-central1 / East US",
        description="Where the prices come from (shown with every priced run).",
    )
    usd_per_hour: dict[str, float] = Field(
        default_factory=dict, description="Instance or machine type -> USD per instance-hour."
    )


def process_usage(started: float) -> dict[str, float]:
    """CPU-seconds (user + system, this process and the children it waited for) and wall seconds since
    `started` (a time.monotonic() reading)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return {"cpu_seconds": round(cpu, 3), "wall_seconds": round(time.monotonic() - started, 3)}


def run_cost(process: dict[str, Any] | None, job: dict[str, Any] | None, costs: CostsSection) -> dict[str, Any]:
    """One run's cost record: `amount` in `unit`, and how it was worked out (`basis`).

    `process` is what the entry point measured (process_usage); `job` what a cloud backend read
    from its platform: platform, instance_type, instance_count, seconds (and for SageMaker
    billable_seconds, training_seconds). Without a job the run is local and costs its CPU-seconds.
    """
    record: dict[str, Any] = dict(process or {})
    if not job:
        if "cpu_seconds" not in record:
            raise ValueError("the entry point reported no usage (cpu_seconds); it was built without ml/cost.py")
        return {**record, "amount": record["cpu_seconds"], "unit": LOCAL_UNIT, "basis": "local CPU-seconds"}
    instance_type, count = job["instance_type"], int(job["instance_count"])
    record |= {"platform": job["platform"], "instance_type": instance_type, "instance_count": count}
    if "billable_seconds" in job:  # SageMaker bills what it reports
        seconds, trained = float(job["billable_seconds"]), float(job.get("training_seconds") or 0)
        record |= {"billable_seconds": seconds, "training_seconds": trained, "estimate": False}
        record["spot_saving"] = round(1 - seconds / trained, 4) if trained > 0 else 0.0
        terms = f"{seconds:g} billable s x {count}"
    else:
        seconds = float(job["seconds"])
        record |= {"job_seconds": seconds, "estimate": True}
        terms = f"estimate: {seconds:g} s of the job x {count}"
    price = costs.usd_per_hour.get(instance_type)
    if price is None:  # the job ran and its model is good: record what it used rather than fail the run
        basis = f"{terms} instance-seconds; params.yaml costs.usd_per_hour has no price for {instance_type!r}"
        return {**record, "amount": seconds * count, "unit": UNPRICED_UNIT, "basis": basis}
    label = f"list prices of {costs.prices_as_of.isoformat()} ({costs.price_source})"
    record |= {"usd_per_hour": price, "prices_as_of": costs.prices_as_of.isoformat()}
    amount = seconds * count * price / 3600
    return {**record, "amount": amount, "unit": USD, "basis": f"{terms} x ${price:g}/h, {label}"}


def calendar_comparison(
    training_costs: list[float], unit: str, first_registered: dt.datetime, now: dt.datetime
) -> dict[str, Any]:
    """The retrains of a model name since its first version beside a weekly calendar over the same days.

    `training_costs` are the training runs of every version, oldest first: the first trained the
    model, each later one is a retrain. The mean cost of a training run is the same for both: the
    retrains cost `retrains x mean`; a weekly calendar would have retrained once per week started
    since the first version (ceil(days / 7)) and cost `weeks x mean`.
    """
    days = max((now - first_registered).total_seconds() / 86400, 0.0)
    weeks = max(math.ceil(days / 7), 1)
    mean = sum(training_costs) / len(training_costs) if training_costs else 0.0
    retrains = max(len(training_costs) - 1, 0)
    return {
        "since": first_registered.isoformat(),
        "days": round(days, 2),
        "retrains": retrains,
        "mean_cost": round(mean, 6),
        "retrains_cost": round(retrains * mean, 6),
        "weekly_retrains": weeks,
        "weekly_calendar_cost": round(weeks * mean, 6),
        "unit": unit,
        "arithmetic": f"{retrains} retrains x {mean:.4g} {unit} vs {weeks} weeks x {mean:.4g} {unit}",
    }
