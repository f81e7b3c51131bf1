"""The code location: every asset, check, job, schedule, sensor and resource (resources per KEEL_DEPLOYMENT)."""

import dagster as dg

from assets.batch_predictions import batch_predictions
from assets.candidate_model import candidate_model
from assets.deployment import deployment
from assets.drift_report import drift_report
from assets.evaluation_gate import evaluation_gate
from assets.features import features
from assets.incoming_data import incoming_data
from assets.labels import labels
from assets.model_performance import model_performance
from assets.raw_data import raw_data
from assets.registered_model import registered_model
from assets.served_requests import served_requests
from assets.training_set import training_set
from orchestration.dead_runs import DEAD_RUN_SENSORS
from orchestration.deployments import resources_for
from orchestration.jobs import JOBS
from orchestration.rollout import ROLLOUT_JOBS
from orchestration.rollout_sensor import ROLLOUT_SENSORS
from orchestration.schedules import SCHEDULES
from orchestration.sensors import SENSORS

ASSETS = [
    raw_data,
    training_set,
    features,
    candidate_model,
    registered_model,
    incoming_data,
    batch_predictions,
    drift_report,
    labels,
    model_performance,
    deployment,
    served_requests,
]
CHECKS = [evaluation_gate]  # the data checks and the monitoring warnings are declared on their assets


def definitions(resources: dict) -> dg.Definitions:
    """The code location over the given resources (tests pass resources rooted in a project copy)."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[*JOBS, *ROLLOUT_JOBS],
        schedules=SCHEDULES,
        sensors=[*SENSORS, *ROLLOUT_SENSORS, *DEAD_RUN_SENSORS],
        resources=resources,
        # Steps share one process: the heavy work runs in subprocesses or cloud jobs (Pipes), and on a
        # laptop a process per step would pay Dagster's and GX's import time again for every step.
        executor=dg.in_process_executor,
    )


defs = definitions(resources_for())
