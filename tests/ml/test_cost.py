"""Run costs: local CPU-seconds, SageMaker's billed seconds, the Vertex / Azure ML estimates, the weekly calendar."""

import datetime as dt
import time

import pytest

from ml.cost import CostsSection, calendar_comparison, process_usage, run_cost

COSTS = CostsSection(usd_per_hour={"ml.m5.xlarge": 0.23, "n1-standard-4": 0.219}, prices_as_of=dt.date(2026, 12, 1))


def test_a_local_run_costs_the_cpu_seconds_its_process_used():
    started = time.monotonic()
    before = process_usage(started)["cpu_seconds"]
    sum(i * i for i in range(2_000_000))  # some CPU work
    usage = process_usage(started)
    assert usage["cpu_seconds"] > before and usage["wall_seconds"] > 0
    cost = run_cost(usage, None, COSTS)
    assert cost["unit"] == "cpu_seconds" and cost["amount"] == usage["cpu_seconds"]


def test_a_sagemaker_job_costs_its_billable_seconds_times_instances_times_the_price():
    job = {
        "platform": "sagemaker",
        "instance_type": "ml.m5.xlarge",
        "instance_count": 2,
        "billable_seconds": 600,
        "training_seconds": 1000,
    }
    cost = run_cost({"cpu_seconds": 3.0, "wall_seconds": 4.0}, job, COSTS)
    assert cost["amount"] == pytest.approx(600 * 2 * 0.23 / 3600)
    assert cost["unit"] == "USD" and cost["estimate"] is False
    assert cost["spot_saving"] == pytest.approx(0.4)  # 1 - 600 / 1000
    assert "list prices of 2026-12-01" in cost["basis"] and cost["cpu_seconds"] == 3.0


def test_vertex_and_azure_jobs_are_estimates_from_their_duration():
    job = {"platform": "vertex", "instance_type": "n1-standard-4", "instance_count": 1, "seconds": 1800}
    cost = run_cost(None, job, COSTS)
    assert cost["amount"] == pytest.approx(0.5 * 0.219)
    assert cost["estimate"] is True and cost["basis"].startswith("estimate")


def test_an_unpriced_instance_type_is_recorded_in_instance_seconds_and_named():
    job = {"platform": "azureml", "instance_type": "Standard_NC6", "instance_count": 2, "seconds": 60}
    cost = run_cost(None, job, COSTS)
    assert cost["unit"] == "instance_seconds" and cost["amount"] == 120
    assert "no price for 'Standard_NC6'" in cost["basis"]


def test_retrains_are_set_beside_a_weekly_calendar_at_the_same_mean_cost():
    now = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    compared = calendar_comparison([1.0, 2.0, 3.0], "USD", now - dt.timedelta(days=20), now)
    # Three training runs: the first version and two retrains; 20 days are three weeks started.
    assert compared["retrains"] == 2 and compared["weekly_retrains"] == 3
    assert compared["mean_cost"] == pytest.approx(2.0)
    assert compared["retrains_cost"] == pytest.approx(4.0) and compared["weekly_calendar_cost"] == pytest.approx(6.0)
