"""Where a night of the demo goes, from the history `python -m demo` left in $DAGSTER_HOME.

    DAGSTER_HOME=var/dagster python -m benchmarks.nights [--repeat 3]

Prints, from that Dagster instance: each job's runs (count, mean and total seconds, start to end) and
each step's mean seconds. Then, measured side by side in this process on one of the demo's days (its
stored reference and capture): the drift report's CPU seconds with Evidently's stock DataDriftPreset
and with the preset the report uses (the same page without the per-column metrics it never shows),
and the verdict alone. Last, the start-up floor of the nightly scoring process: CPU seconds of a
`python -m ml.score`-style interpreter that only imports what the scorer imports.
"""

from __future__ import annotations

import argparse
import collections
import glob
import resource
import subprocess
import sys
import time

import dagster as dg

import ml.drift
import ml.io
import ml.predictions
from ml.params import load_params
from orchestration.deployments import PROJECT_ROOT, resources_for
from resources import layout


def job_table(instance: dg.DagsterInstance) -> None:
    jobs, steps = collections.defaultdict(list), collections.defaultdict(list)
    for record in instance.get_run_records():
        if record.start_time is None or record.end_time is None:
            continue
        run = record.dagster_run
        jobs[run.job_name].append(record.end_time - record.start_time)
        for step in instance.get_run_step_stats(run.run_id):
            if step.start_time and step.end_time:
                steps[f"{run.job_name}/{step.step_key}"].append(step.end_time - step.start_time)
    if not jobs:
        raise SystemExit(f"no finished runs in {instance.root_directory}: run `python -m demo` first")
    print(f"{'job':<50}{'runs':>5}{'mean s':>9}{'total s':>9}")
    for name, seconds in sorted(jobs.items()):
        print(f"{name:<50}{len(seconds):>5}{sum(seconds) / len(seconds):>9.2f}{sum(seconds):>9.1f}")
    for name, seconds in sorted(steps.items()):
        print(f"  {name:<48}{len(seconds):>5}{sum(seconds) / len(seconds):>9.2f}{sum(seconds):>9.1f}")


def cpu(work, repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        work()
    return (time.process_time() - start) / repeat


def drift_side_by_side(repeat: int) -> None:
    import evidently.presets

    spec = load_params(PROJECT_ROOT / "params.yaml").dataset
    storage = resources_for()["storage"]
    days = sorted(glob.glob(layout.predictions(storage, "*")))  # predictions/day=YYYY-MM-DD, oldest first
    captures = [ml.predictions.capture_uri(day) for day in days[-1:]]
    references = glob.glob(str(PROJECT_ROOT / "var" / "mlflow" / "**" / "reference" / "*.parquet"), recursive=True)
    if not captures or not references:
        raise SystemExit("no capture or stored reference under var/: run `python -m demo` first")
    reference, current = ml.io.read_parquet(references[0]), ml.drift.load_capture(captures[-1], spec)
    used = ml.drift.drift_table_preset

    def with_preset(preset) -> None:
        ml.drift.drift_table_preset = preset
        try:
            ml.drift.drift_report(reference, current, spec, drift_share=0.3)
        finally:
            ml.drift.drift_table_preset = used

    with_preset(used)  # imports Evidently, outside the measurement
    stock = cpu(lambda: with_preset(lambda: evidently.presets.DataDriftPreset), repeat)
    ours = cpu(lambda: with_preset(used), repeat)
    verdict = cpu(lambda: ml.drift.drift_verdict(reference, current, spec, drift_share=0.3), repeat)
    print(f"\ndrift report on {len(current):,} captured rows against {len(reference):,} reference rows, CPU s:")
    print(f"  stock DataDriftPreset page    {stock:6.3f}")
    print(f"  the report's preset           {ours:6.3f}  ({ours / stock:.2f} of stock)")
    print(f"  verdict alone (calibration)   {verdict:6.3f}")


def scorer_start_up() -> None:
    code = "import sys; sys.modules.setdefault('sklearn', None); import ml.score, ml.predictor"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"\nscoring process start-up (interpreter + the scorer's imports): {seconds:.2f} CPU s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with dg.DagsterInstance.get() as instance:
        job_table(instance)
    drift_side_by_side(args.repeat)
    scorer_start_up()
    return 0


if __name__ == "__main__":
    sys.exit(main())
