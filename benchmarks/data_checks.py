"""A day's data checks: time and peak memory of the `incoming_data` asset (its md5, its five GX checks).

    python -m benchmarks.data_checks [--sizes 2000 1000000] [--code DIR ...]

For each size N it bootstraps N rows from the example data (the spec's columns without the target,
new unique ids) into a day's Parquet file with 100k-row row groups, written chunk by chunk, and
materializes `incoming_data` for that day in a child process, for each `--code` checkout (default:
this one; pass an older checkout too to compare, e.g. `--code . ../main`). Peak memory is the
child's maximum resident set size (os.wait4, taken by a small launcher, as in benchmarks/scoring.py);
"imports" is the same child importing Dagster, GX and the asset without running it, so the
difference is what checking the day costs. Times are the materialization after imports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ml.example_data import example_frame
from ml.ingest import with_ids
from ml.params import load_params
from ml.sources import as_text

ROOT = Path(__file__).resolve().parents[1]
ROW_GROUP = 100_000
DAY = "2026-10-01"

LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""

# Run in the child, with the checkout under test first on sys.path: imports, then (unless told not to)
# one materialization of incoming_data for DAY on an ephemeral instance.
CHILD = """
import json, sys, time
code, project, day, run = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "run"
sys.path.insert(0, code)
import dagster as dg
import great_expectations  # noqa: F401 - imported before timing, as the asset imports it at its first run
from assets.incoming_data import incoming_data
from resources.params import ParamsResource
from resources.records import RecordIOManager
from resources.storage import ArtifactStore
if run:
    storage = ArtifactStore(root=project + "/store")
    started = time.perf_counter()
    result = dg.materialize(
        [incoming_data], partition_key=day, raise_on_error=False,
        resources={"params": ParamsResource(project_dir=project), "io_manager": RecordIOManager(storage=storage)},
    )
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    print(json.dumps({"seconds": time.perf_counter() - started, "success": result.success, "checks": checks}))
"""


def day_rows(rows: int, path: Path, seed: int = 0) -> None:
    """`rows` rows drawn with replacement from the example data, ids `B000000001`..., one row group at a time."""
    spec = load_params(ROOT / "params.yaml").dataset
    raw = with_ids(example_frame("telco_churn"), spec)
    for col in spec.text_columns:
        raw[col] = as_text(raw[col])
    table = pa.Table.from_pandas(raw.drop(columns=[spec.target.column]), preserve_index=False)
    others = [c for c in table.column_names if c != spec.id.column]
    schema = pa.schema([pa.field(spec.id.column, pa.string()), *[table.schema.field(c) for c in others]])
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            picked = table.select(others).take(rng.integers(0, table.num_rows, n))
            ids = pa.array([f"B{i:09d}" for i in range(start + 1, start + n + 1)], pa.string())
            writer.write_table(pa.Table.from_arrays([ids, *picked.columns], schema=schema))


def project_for(folder: Path, rows_file: Path) -> Path:
    """A project folder whose params.yaml is this one's with the day's file at `rows_file`."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["daily"]["incoming"] = str(rows_file.parent / "{date}.parquet")
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def child(code: Path, project: Path, run: bool) -> tuple[float, dict]:
    """(peak RSS in MiB, the child's report) of one child process."""
    usage = project / "child.rusage"
    command = [sys.executable, "-c", LAUNCHER, str(usage), sys.executable, "-c", CHILD]
    command += [str(code), str(project), DAY, "run" if run else "imports"]
    proc = subprocess.run(command, cwd=code, capture_output=True, text=True)
    maxrss_kib, status = (int(v) for v in usage.read_text().split())
    if status != 0:
        raise SystemExit(f"the child failed ({status}):\n{proc.stderr[-3000:]}")
    return maxrss_kib / 1024, json.loads(proc.stdout) if run else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 1_000_000])
    parser.add_argument("--code", type=Path, nargs="+", default=[ROOT], help="checkouts whose incoming_data to run")
    args = parser.parse_args(argv)
    codes = [c.resolve() for c in args.code]
    print(f"{'rows':>10} | {'code':<24} | {'seconds':>8} | {'peak MiB':>8} | {'imports MiB':>11} | checks")
    with tempfile.TemporaryDirectory(prefix="keel-bench-checks-") as tmp:
        for size in args.sizes:
            folder = Path(tmp) / str(size)
            (folder / "incoming").mkdir(parents=True)
            rows_file = folder / "incoming" / f"{DAY}.parquet"
            day_rows(size, rows_file)
            project = project_for(folder, rows_file)
            for code in codes:
                imports, _ = child(code, project, run=False)
                peak, report = child(code, project, run=True)
                passed = "all passed" if report["success"] and all(report["checks"].values()) else report["checks"]
                print(
                    f"{size:>10,} | {str(code)[-24:]:<24} | {report['seconds']:>8.1f} | {peak:>8.0f} | "
                    f"{imports:>11.0f} | {passed}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
