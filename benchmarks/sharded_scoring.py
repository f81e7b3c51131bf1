"""A day scored as N local processes against one process, side by side on the same file and model.

    python -m benchmarks.sharded_scoring [--rows 10000000] [--shards 1 2] [--chunk-rows 100000]

Bootstraps `--rows` rows (benchmarks/scoring.py's `bootstrap`, 100k-row row groups) and trains the
project's LightGBM artifact (`train_model`), then for each N in `--shards` runs N
`python -m ml.score --parts ... --shard i` processes at once, as LocalCompute runs a day, and
publishes the day (ml/predictions.py: the capture merge and the manifest). Every scoring process
predicts with one thread (OMP_NUM_THREADS=1), so N processes use N cores; the figure is wall time
from the first start to the last exit, plus the publish step, and speedup = one process / N.
`sharded_figures` is the same measurement for a caller that already has a model and a rows file.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.scoring import bootstrap, train_model
from ml.io import file_digest, write_json
from ml.params import load_params
from ml.predictions import publish, read_manifest

REPO = Path(__file__).resolve().parents[1]
SPEEDUP_TARGET = 1.7  # two processes against one
CAPTURE_ROWS, CAPTURE_SEED = 50_000, 0  # params.yaml drift.current_rows / drift.seed


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _score_day(model_dir: str, config: Path, rows_path: str, parts: Path, shards: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for `shards` scoring processes started together, the cores split between them, as LocalCompute does."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // shards))}  # as LocalCompute
    base = [sys.executable, "-m", "ml.score", "--model", model_dir, "--rows", rows_path, "--config", str(config)]
    started, cpu = time.perf_counter(), _children_cpu_seconds()
    processes = [
        subprocess.Popen(
            [*base, "--parts", str(parts), "--shard", str(i)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(shards)
    ]
    failures = [(i, p.communicate()[1]) for i, p in enumerate(processes)]
    seconds, cpu = time.perf_counter() - started, _children_cpu_seconds() - cpu
    for (i, stderr), process in zip(failures, processes, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"shard {i} of {shards} failed:\n{stderr[-2000:]}")
    return seconds, cpu


def sharded_figures(
    model_dir: str,
    manifest_sha256: str,
    rows_path: str,
    id_column: str,
    shards: tuple[int, ...] = (1, 2),
    chunk_rows: int = 100_000,
) -> dict:
    """Score the file as each N in `shards` (N processes, the cores split between them, as LocalCompute does); print and return the figures."""
    rows = pq.ParquetFile(rows_path).metadata.num_rows
    figures: dict = {"rows": rows, "cores": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="keel-bench-shards-") as tmp:
        work = Path(tmp)
        md5 = file_digest(rows_path, "md5")
        for n in shards:
            config = work / f"config-{n}.json"
            document = {"expected_manifest_sha256": manifest_sha256, "id_column": id_column, "chunk_rows": chunk_rows}
            document |= {"rows_md5": md5, "capture_rows": CAPTURE_ROWS, "capture_seed": CAPTURE_SEED, "shards": n}
            write_json(document, str(config))
            day = work / f"day-{n}"
            seconds, cpu = _score_day(model_dir, config, rows_path, day / "run-1", n)
            started = time.perf_counter()
            report = publish(str(day), str(day / "run-1"), n, CAPTURE_ROWS, CAPTURE_SEED)
            publishing = time.perf_counter() - started
            total = seconds + publishing
            figures[n] = {
                "seconds": round(total, 2),
                "score_seconds": round(seconds, 2),
                "publish": round(publishing, 2),
                "cpu_seconds": round(cpu, 1),
            }
            figures[n]["rows_per_second"] = round(rows / total)
            figures[n]["split"] = read_manifest(str(day))["split"]
            assert report["rows"] == rows
            print(
                f"{n} process(es), {max(1, (os.cpu_count() or 1) // n)} prediction thread(s) each: {total:.1f}s ({rows / total:,.0f} rows/s; "
                f"scoring {seconds:.1f}s + publish {publishing:.2f}s; split by {figures[n]['split']}; "
                f"{cpu:.1f} CPU s, {cpu / seconds:.2f} cores busy)",
                flush=True,
            )
    one = figures.get(1, {}).get("seconds")
    for n in shards:
        if n != 1 and one:
            figures[n]["speedup"] = round(one / figures[n]["seconds"], 2)
            goal = f" (goal >= {SPEEDUP_TARGET}x)" if n == 2 else ""
            print(f"speedup of {n} processes over 1: {figures[n]['speedup']:.2f}x{goal}", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sharded_scoring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the bootstrapped day")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2], help="the N to measure, side by side")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="ml.score chunk_rows")
    args = parser.parse_args(argv)
    spec = load_params(REPO / "params.yaml").dataset
    raw = pq.read_table(REPO / "data" / "raw" / "data.parquet", columns=spec.expected_columns(include_target=False))
    print(f"cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="keel-bench-sharded-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        bootstrap(raw, spec.id.column, args.rows, work / "rows.parquet", seed=1)
        print(f"bootstrapped {args.rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
        model, manifest_sha256 = train_model(work)
        sharded_figures(model, manifest_sha256, str(work / "rows.parquet"), spec.id.column, tuple(args.shards))
    return 0


if __name__ == "__main__":
    sys.exit(main())
