"""The demo on the embedded defaults: `make demo` (or `python -m orchestration.demo`).

Runs the `prepare_data` job against the Dagster instance in $DAGSTER_HOME (var/dagster), so that
`make ui` afterwards shows its history, pushes the versioned data to the local DVC remote, and
prints what was produced.
"""

from __future__ import annotations

import os
import sys
import time

import dagster as dg

from assets.features import features
from assets.raw_data import raw_data
from orchestration.definitions import defs
from orchestration.deployments import PROJECT_ROOT, resources_for


def _metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else {}


def main() -> int:
    if "DAGSTER_HOME" not in os.environ:
        print("DAGSTER_HOME is not set; run the demo with `make demo`", file=sys.stderr)
        return 2
    started = time.monotonic()
    instance = dg.DagsterInstance.get()
    print("Running job prepare_data: import + version the raw data (DVC), data checks (GX), features ...")
    result = defs.resolve_job_def("prepare_data").execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
    )
    checks = result.get_asset_check_evaluations()
    raw, feats = _metadata(instance, raw_data.key), _metadata(instance, features.key)

    print("\n== What was produced ==")
    print(
        f"raw_data    version (DVC md5) {raw.get('dvc_md5')}  rows {raw.get('dagster/row_count')}  "
        f"columns {raw.get('columns')}  git {raw.get('git_revision')}"
    )
    print(f"            {raw.get('path')}")
    for check in checks:
        print(f"  check {check.check_name:<13} {'passed' if check.passed else 'FAILED'}")
    if result.success:
        print(
            f"features    rows {feats.get('dagster/row_count')}  features {feats.get('feature_count')}  "
            f"positive rate {feats.get('positive_rate'):.3f}"
        )
        print(f"            {feats.get('table')}\n            {feats.get('feature_state')}")
        resources_for()["dvc"].run("push")
        print(f"DVC         pushed to the local remote ({PROJECT_ROOT / 'var' / 'dvc-remote'})")
    else:
        print("The run failed: see the errors above, or the run in the UI.")
    print(f"\nDone in {time.monotonic() - started:.0f}s (run {result.run_id}).")
    print("Open the UI on this history:  make ui   ->  http://127.0.0.1:3000  (Assets, Runs, Jobs)")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
