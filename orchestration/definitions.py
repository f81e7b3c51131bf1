"""The code location: every asset, check, job and resource (resources per KEEL_DEPLOYMENT)."""

import dagster as dg

from assets.candidate_model import candidate_model
from assets.evaluation_gate import evaluation_gate
from assets.raw_data import raw_data, raw_data_checks
from assets.registered_model import registered_model
from assets.training_set import training_set
from orchestration.deployments import resources_for
from orchestration.jobs import JOBS

defs = dg.Definitions(
    assets=[raw_data, training_set, candidate_model, registered_model],
    asset_checks=[raw_data_checks, evaluation_gate],
    jobs=JOBS,
    resources=resources_for(),
    # Steps share one process: the heavy work runs in subprocesses or cloud jobs (Pipes), and on a
    # laptop a process per step would pay Dagster's and GX's import time again for every step.
    executor=dg.in_process_executor,
)
