"""The cost of one canary_bake tick: the day's request log read and the bake decided, per log size.

    .venv/bin/python -m benchmarks.bake [--rows 10000 100000 1000000]

Writes request logs in the serving format (10 % canary, 50,000-row files as a busy server would)
under a temporary store, then times `read_day` and `decide` (latency, errors, calibrated score
drift) on each, side by side in one run. A tick must stay well under the sensor's 30 s interval.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml.params import RolloutSection
from serving.bake import decide
from serving.request_log import BASE_SCHEMA, day_folder, read_day

DAY = dt.date(2026, 12, 3)
FILE_ROWS = 50_000


def write_log(store: str, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(DAY.isoformat(), tz="UTC")
    folder = day_folder(store, DAY)
    os.makedirs(folder, exist_ok=True)
    for n, first in enumerate(range(0, rows, FILE_ROWS)):
        size = min(FILE_ROWS, rows - first)
        canary = rng.random(size) < 0.1
        frame = pd.DataFrame(
            {
                "request_id": [f"r{first + i}" for i in range(size)],
                "received_at": (start + pd.to_timedelta(rng.uniform(0, 3600, size), unit="s")).floor("us"),
                "arm": np.where(canary, "canary", "champion"),
                "model_version": np.where(canary, 2, 1).astype("int64"),
                "manifest_sha256": "x" * 64,
                "latency_ms": rng.gamma(4, 1.5, size),
                "status": np.full(size, 200, dtype="int16"),
                "score": rng.beta(2, 5, size),
                "served": True,
            }
        )
        pq.write_table(
            pa.Table.from_pandas(frame, schema=BASE_SCHEMA, preserve_index=False), f"{folder}/b-{n:06d}.parquet"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    settings = RolloutSection()
    since = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC)
    print(f"{'logged rows':>12} {'read_day s':>11} {'decide s':>9} {'tick s':>7}  outcome")
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="keel-bake-bench-") as store:
            write_log(store, rows)
            started = time.perf_counter()
            log = read_day(store, DAY)
            read = time.perf_counter() - started
            started = time.perf_counter()
            decision = decide(
                log,
                canary_arm="canary",
                challenger_version=2,
                since=since,
                now=since + dt.timedelta(hours=2),
                settings=settings,
                champion_version=1,
            )
            decided = time.perf_counter() - started
            print(f"{rows:>12,} {read:>11.2f} {decided:>9.2f} {read + decided:>7.2f}  {decision.outcome}")


if __name__ == "__main__":
    main()
