"""The code location: every asset, check, job and resource (resources per KEEL_DEPLOYMENT)."""

import dagster as dg

from assets.features import features
from assets.raw_data import raw_data, raw_data_checks
from orchestration.deployments import resources_for
from orchestration.jobs import prepare_data

defs = dg.Definitions(
    assets=[raw_data, features],
    asset_checks=[raw_data_checks],
    jobs=[prepare_data],
    resources=resources_for(),
    # Steps share one process: the heavy work runs in subprocesses or cloud jobs (Pipes), and on a
    # laptop a process per step would pay Dagster's and GX's import time again for every step.
    executor=dg.in_process_executor,
)
