"""Batch scoring cost: end-to-end `score_file` against raw prediction, compiled and LightGBM, and peak memory.

    python -m benchmarks.scoring [--rows 1000000] [--memory-rows 10000000] [--chunk-rows 100000]

1. Bootstraps rows from data/raw/data.parquet (the spec's columns without the target, new unique ids)
   into Parquet files with 100k-row row groups, generated chunk by chunk (10M rows never sit in memory).
2. Trains a LightGBM artifact on the real training data as the project does (ml.split's training set,
   params.yaml `training:`, `python -m ml.train`'s code), and compiles it (ml/compiled.py) into a fresh
   cache: the compile time.
3. In one process, side by side (each measured `--repeat` times, alternating, best kept):
   (a) raw: prediction on the already-built feature matrix of the same rows, held in memory: LightGBM's
       `booster.predict` and the compiled model's, each with 1 and 2 threads;
   (b) end-to-end: `ml.score.score_file` on the file (read -> features -> predict -> write) as it runs
       (compiled), the same with the compilation turned off (`compiled: false`, LightGBM's predict: the
       path before compiled prediction), and as the nightly job asks for it (also checking the file's
       md5 and keeping the drift capture);
   the ratio end-to-end / best compiled raw (target >= 0.6), the speed-up over the LightGBM end-to-end
   (target >= 4), and a sequential stage profile.
4. Scores the `--memory-rows` file with `python -m ml.score` as the nightly job runs it (md5 check and
   capture included) in a child process: its time and peak resident set size (target <= 1 GB), the
   scorer's own maximum RSS from os.wait4, taken by a small launcher process (see LAUNCHER: measured
   from this process, the figure would include its own RSS).
5. Scores the same file as 1 and as 2 local shards (benchmarks/sharded_scoring.py: N `python -m ml.score`
   processes at once, as LocalCompute runs a sharded day): wall time, CPU seconds, the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml import compiled
from ml.io import file_digest, write_json
from ml.params import load_params
from ml.predictor import Predictor
from ml.score import score_file
from ml.split import split_rows, training_features
from ml.train import run as train

REPO = Path(__file__).resolve().parents[1]
ROW_GROUP = 100_000
RATIO_TARGET, SPEEDUP_TARGET, RSS_TARGET_MB = 0.6, 4.0, 1024
CAPTURE_ROWS = 50_000  # params.yaml drift.current_rows


def bootstrap(raw: pa.Table, id_column: str, rows: int, path: Path, seed: int) -> None:
    """`rows` rows drawn with replacement from `raw`, ids `B000000001`..., written one row group at a time."""
    rng = np.random.default_rng(seed)
    others = [c for c in raw.column_names if c != id_column]
    schema = pa.schema([raw.schema.field(id_column), *[raw.schema.field(c) for c in others]])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            picked = raw.select(others).take(rng.integers(0, raw.num_rows, n))
            ids = pa.array([f"B{i:09d}" for i in range(start + 1, start + n + 1)], pa.string())
            writer.write_table(pa.Table.from_arrays([ids, *picked.columns], schema=schema))


def train_model(folder: Path) -> tuple[str, str]:
    """A LightGBM artifact trained on the project's data and settings; returns (directory, manifest sha256)."""
    params = load_params(REPO / "params.yaml")
    config = params.training.resolve(model="lightgbm")
    raw = pd.read_parquet(params.raw_uri)
    rows = split_rows(raw, params.dataset, fraction=config.holdout_fraction, seed=config.seed)
    table, state = training_features(rows, params.dataset, params.features)
    table.to_parquet(folder / "features.parquet", index=False)
    write_json(state.to_dict(), str(folder / "state.json"))
    write_json(config.to_dict(), str(folder / "config.json"))
    report = train(
        str(folder / "features.parquet"), str(folder / "state.json"), str(folder / "config.json"), str(folder / "model")
    )
    return str(folder / "model"), report["manifest_sha256"]


def feature_matrix(path: Path, predictor: Predictor, chunk_rows: int) -> np.ndarray:
    """The file's rows through the feature code, as the float64 matrix the models predict on."""
    parts = [
        predictor.matrix(batch)
        for batch in pq.ParquetFile(path).iter_batches(chunk_rows, columns=predictor.state.input_columns)
    ]
    return np.vstack(parts)


def stage_profile(path: Path, predictor: Predictor, id_column: str, chunk_rows: int, out: Path) -> dict[str, float]:
    """Seconds per stage, run one after the other on one thread (ml.score overlaps predict with the rest)."""
    seconds = dict.fromkeys(["read", "features", "predict", "write"], 0.0)
    columns = [*predictor.state.input_columns, id_column]
    schema = pa.schema([(id_column, pa.string()), ("score", pa.float64())])
    clock = time.perf_counter()
    text = [c.column for c in (*predictor.state.categorical, *predictor.state.boolean)]  # read as ml.score does
    with pq.ParquetWriter(out, schema, use_dictionary=False) as writer:
        for batch in pq.ParquetFile(path, read_dictionary=text).iter_batches(chunk_rows, columns=columns):
            now = time.perf_counter()
            seconds["read"] += now - clock
            features = predictor.matrix(batch)
            seconds["features"] += (clock := time.perf_counter()) - now
            scores = predictor.model.predict(features)
            seconds["predict"] += (now := time.perf_counter()) - clock
            clock = now
            writer.write_table(pa.table({id_column: batch.column(id_column), "score": scores}, schema=schema))
            seconds["write"] += (now := time.perf_counter()) - clock
            clock = now
    return {k: round(v, 2) for k, v in seconds.items()}


# Linux charges a child with the RSS its parent had when it was spawned (wait4's ru_maxrss keeps the
# address space it replaced at exec), and this process holds the feature matrix: a small launcher
# process starts the scorer and reports that grandchild's own peak.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def child_run(model: str, rows: Path, config: Path, out: Path) -> tuple[float, float, dict]:
    """`python -m ml.score` in a child process: (seconds, its peak RSS in MiB, its report)."""
    usage = out.with_suffix(".rusage")
    command = [sys.executable, "-c", LAUNCHER, str(usage), sys.executable, "-m", "ml.score", "--model", model]
    command += ["--rows", str(rows), "--config", str(config), "--predictions", str(out)]
    command += ["--capture", str(out.with_suffix(".capture.parquet"))]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    maxrss_kib, code = (int(v) for v in usage.read_text().split())
    if proc.returncode != 0 or code != 0:
        raise SystemExit(f"python -m ml.score failed with exit code {code}:\n{proc.stderr[-2000:]}")
    return seconds, maxrss_kib / 1024, json.loads(proc.stdout)  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scoring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the side-by-side throughput run")
    parser.add_argument("--memory-rows", type=int, default=10_000_000, help="rows for the peak-memory run (0: skip)")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="ml.score chunk_rows")
    parser.add_argument("--repeat", type=int, default=2, help="measurements of (a) and (b) each; the best is kept")
    args = parser.parse_args(argv)
    spec = load_params(REPO / "params.yaml").dataset
    id_column = spec.id.column
    raw = pq.read_table(REPO / "data" / "raw" / "data.parquet", columns=spec.expected_columns(include_target=False))
    print(f"cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="keel-bench-scoring-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        bootstrap(raw, id_column, args.rows, work / "rows.parquet", seed=1)
        print(f"bootstrapped {args.rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
        model, manifest_sha256 = train_model(work)
        os.environ[compiled.CACHE_ENV] = str(work / "compiled")  # a fresh cache: the first load compiles
        clock = time.perf_counter()
        fast = Predictor.load(model, manifest_sha256, compiled=True)
        print(f"{fast.engine} in {time.perf_counter() - clock:.1f}s", flush=True)
        if not isinstance(fast.model, compiled.CompiledLightGBMModel):
            raise SystemExit("compiled prediction is unavailable here: nothing to compare")
        booster, lleaves_model = fast.model.booster, fast.model.compiled
        config = {"expected_manifest_sha256": manifest_sha256, "id_column": id_column, "chunk_rows": args.chunk_rows}
        # What batch_predictions asks of the scorer too: the rows' checked md5, and the drift report's capture.
        nightly = {**config, "rows_md5": file_digest(str(work / "rows.parquet"), "md5"), "capture_rows": CAPTURE_ROWS}
        write_json(nightly, str(work / "config.json"))

        def run(cfg: dict, capture: str | None = None) -> None:
            report = score_file(model, str(work / "rows.parquet"), str(work / "e2e.parquet"), cfg, lambda _: 0, capture)
            reports[report["predictor"]] = report

        matrix = feature_matrix(work / "rows.parquet", fast, args.chunk_rows)
        reports: dict[str, dict] = {}
        measured = {
            "LightGBM predict, 1 thread": lambda: booster.predict(matrix, num_threads=1),
            "LightGBM predict, 2 threads": lambda: booster.predict(matrix, num_threads=2),
            "compiled predict, 1 thread": lambda: lleaves_model.predict(matrix, n_jobs=1),
            "compiled predict, 2 threads": lambda: lleaves_model.predict(matrix, n_jobs=2),
            "end-to-end score_file (compiled)": lambda: run(config),
            "end-to-end score_file (LightGBM)": lambda: run({**config, "compiled": False}),
            f"  compiled + md5 check + {CAPTURE_ROWS:,}-row capture": lambda: run(nightly, str(work / "c.parquet")),
        }
        seconds = {name: float("inf") for name in measured}
        for _ in range(args.repeat):
            for name, call in measured.items():
                clock = time.perf_counter()
                call()
                seconds[name] = min(seconds[name], time.perf_counter() - clock)
        difference = np.abs(lleaves_model.predict(matrix) - booster.predict(matrix)).max()
        print(f"\nthroughput on {args.rows:,} rows (best of {args.repeat}; {args.chunk_rows:,}-row chunks):")
        for name, value in seconds.items():
            print(f"  {name:50s} {value:7.2f} s  {args.rows / value:12,.0f} rows/s")
        print(f"  predictors: {sorted(reports)}; compiled vs LightGBM max |difference| {difference:.1e}")
        rate = {name: args.rows / value for name, value in seconds.items()}
        best_compiled = max(rate["compiled predict, 1 thread"], rate["compiled predict, 2 threads"])
        ratio = rate["end-to-end score_file (compiled)"] / best_compiled
        verdict = "meets" if ratio >= RATIO_TARGET else "MISSES"
        print(f"  ratio end-to-end / best compiled raw predict: {ratio:.2f} ({verdict} the target {RATIO_TARGET})")
        speedup = rate["end-to-end score_file (compiled)"] / rate["end-to-end score_file (LightGBM)"]
        verdict = "meets" if speedup >= SPEEDUP_TARGET else "MISSES"
        print(f"  end-to-end compiled / end-to-end LightGBM: {speedup:.1f}x ({verdict} the target {SPEEDUP_TARGET}x)")
        best_lightgbm = max(rate["LightGBM predict, 1 thread"], rate["LightGBM predict, 2 threads"])
        ratio = rate["end-to-end score_file (LightGBM)"] / best_lightgbm
        print(f"  ratio end-to-end / best raw predict, both with LightGBM: {ratio:.2f}")
        profile = stage_profile(work / "rows.parquet", fast, id_column, args.chunk_rows, work / "p.parquet")
        print(f"  sequential stage profile (compiled), seconds: {profile}", flush=True)
        matrix = np.empty((0, 0))  # frees it before the memory run (the lambdas above hold the name)

        if args.memory_rows:
            big = work / "big.parquet"
            started = time.perf_counter()
            bootstrap(raw, id_column, args.memory_rows, big, seed=2)
            size_mb = big.stat().st_size / 2**20
            print(
                f"\nbootstrapped {args.memory_rows:,} rows ({size_mb:,.0f} MiB) in {time.perf_counter() - started:.1f}s"
            )
            write_json({**nightly, "rows_md5": file_digest(str(big), "md5")}, str(work / "config.json"))
            wall, peak_mb, report = child_run(model, big, work / "config.json", work / "big_predictions.parquet")
            verdict = "meets" if peak_mb <= RSS_TARGET_MB else "MISSES"
            print(
                f"python -m ml.score on {report['rows']:,} rows ({args.chunk_rows:,}-row chunks, {report['predictor']}):"
            )
            print(
                f"  {wall:.1f} s wall, {report['seconds']:.1f} s in score_file ({report['rows_per_second']:,.0f} rows/s)"
            )
            print(f"  peak RSS {peak_mb:,.0f} MiB ({verdict} the target {RSS_TARGET_MB} MiB)", flush=True)
            from benchmarks.sharded_scoring import sharded_figures  # it imports this module's helpers

            print(f"\nthe same {args.memory_rows:,} rows as local shards (benchmarks/sharded_scoring.py):", flush=True)
            sharded_figures(model, manifest_sha256, str(big), id_column, shards=(1, 2), chunk_rows=args.chunk_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
