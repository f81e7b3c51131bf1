"""Drift report cost: plain Evidently on whole frames against the project's sampled path (ml/drift.py).

    python -m benchmarks.drift [--sizes 100000 1000000] [--reference-rows 20000] [--current-rows 50000]

For each size N it bootstraps N reference rows and N current rows from data/raw/data.parquet (new ids;
the current rows shifted: one numeric column x1.25 and one categorical column's mix changed), with a
synthetic score per row, and writes them as Parquet in chunks (the current rows as a day's partition:
a rows file and a predictions file). Then, each in its own child process:

- plain: `Report([DataDriftPreset()], include_tests=True).run(current, reference)` on the whole frames
  read from Parquet (the spec's feature columns; the id is left out, or Evidently would treat a column of
  unique strings as text), and its HTML rendered, as a user would save it;
- ours: the stored reference profile read back; the day's capture kept as `ml.score` keeps it while
  scoring (a seeded sample by id of the rows and their scores, streamed once: the sampling cost is
  counted here, although the scorer pays it in the nightly job); `load_capture` and `drift_report`
  (which also tests prediction drift and renders the HTML);
- profile: what registration pays once per model: the N reference rows read and `reference_profile`
  written (not part of a daily drift run, shown on its own).

Times are the work after imports (each child imports Evidently first, ~8 s, not counted); peak memory is
the child's maximum resident set size (os.wait4's rusage of that child: RUSAGE_CHILDREN for one child).
Verdicts are compared on the feature columns, both with a dataset drift share of 0.5 (plain's default).
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

from ml.params import load_params
from ml.spec import DatasetSpec

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 100_000
DRIFT_SHARE = 0.5  # DataDriftPreset's default, so the two dataset verdicts are comparable


def _spec() -> DatasetSpec:
    return load_params(ROOT / "params.yaml").dataset


def _scores(frame: pd.DataFrame, raw: pd.DataFrame, spec: DatasetSpec, rng: np.random.Generator) -> np.ndarray:
    """A stand-in model: a fixed logistic function of the numeric columns, scaled on the raw data (so a
    shifted column moves the scores, as it would a real model's)."""
    logit = np.zeros(len(frame))
    for i, col in enumerate(spec.columns.numeric):
        mean, std = raw[col].mean(), raw[col].std() + 1e-9
        logit += (-1) ** i * (frame[col].astype("float64").fillna(mean).to_numpy() - mean) / std * 0.5
    return 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, len(frame)))))


def _shift(frame: pd.DataFrame, spec: DatasetSpec, rng: np.random.Generator) -> pd.DataFrame:
    """A realistic change: a numeric column up 25%, and a categorical column's rarest value 30% more common."""
    numeric, categorical = spec.columns.numeric[-2], spec.columns.categorical[-1]
    frame[numeric] = frame[numeric] * 1.25
    rarest = frame[categorical].value_counts().idxmin()
    frame.loc[rng.random(len(frame)) < 0.3, categorical] = rarest
    return frame


def generate(raw: pd.DataFrame, spec: DatasetSpec, n: int, folder: Path, seed: int) -> dict[str, str]:
    """Reference rows (features + prediction) and a shifted day's partition (rows + predictions), in chunks."""
    rng = np.random.default_rng(seed)
    id_col = spec.id.column
    paths = {name: str(folder / f"{name}.parquet") for name in ("reference", "rows", "predictions")}
    writers: dict[str, pq.ParquetWriter] = {}

    def write(name: str, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if name not in writers:
            writers[name] = pq.ParquetWriter(paths[name], table.schema)
        writers[name].write_table(table)

    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        ids = [f"R{i:09d}" for i in range(start, start + size)]
        ref = raw.iloc[rng.integers(0, len(raw), size)].reset_index(drop=True).assign(**{id_col: ids})
        write("reference", ref.assign(prediction=_scores(ref, raw, spec, rng)))
        cur = _shift(raw.iloc[rng.integers(0, len(raw), size)].reset_index(drop=True), spec, rng)
        cur[id_col] = [f"D{i:09d}" for i in range(start, start + size)]
        write("rows", cur.drop(columns=spec.target.column))
        write("predictions", pd.DataFrame({id_col: cur[id_col], "score": _scores(cur, raw, spec, rng)}))
    for writer in writers.values():
        writer.close()
    return paths


# --- children -----------------------------------------------------------------------------------------


def _plain(paths: dict[str, str], spec: DatasetSpec, args: argparse.Namespace) -> dict:
    from evidently import DataDefinition, Dataset, Report  # noqa: F401 - the same imports as ours
    from evidently.metrics import ValueDrift  # noqa: F401
    from evidently.presets import DataDriftPreset

    from ml.drift import read_verdicts

    start = time.perf_counter()
    features = spec.feature_columns
    reference = pd.read_parquet(paths["reference"], columns=features)
    current = pd.read_parquet(paths["rows"], columns=features)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current_data=current, reference_data=reference)
    html = snapshot.get_html_str(as_iframe=False)
    seconds = time.perf_counter() - start
    found = read_verdicts(snapshot.dict())
    return {
        "seconds": seconds,
        "html_bytes": len(html),
        "columns": {c: found["columns"][c]["drifted"] for c in features},
        "methods": {c: found["columns"][c]["method"] for c in features},
        "dataset_drift": found["dataset_drift"],
    }


def _ours(paths: dict[str, str], spec: DatasetSpec, args: argparse.Namespace) -> dict:
    from evidently import DataDefinition, Dataset, Report  # noqa: F401 - imported before the clock, as in plain
    from evidently.metrics import ValueDrift  # noqa: F401
    from evidently.presets import DataDriftPreset  # noqa: F401

    from ml.drift import drift_report, load_capture
    from ml.sample import StreamSample

    start = time.perf_counter()
    reference = pd.read_parquet(paths["profile"])
    # The day's capture as ml.score keeps it while it scores: the rows and their scores, streamed once.
    sample, scores = StreamSample(args.current_rows, spec.id.column, args.seed), pq.read_table(paths["predictions"])
    offset, table = 0, None
    for batch in pq.ParquetFile(paths["rows"]).iter_batches(CHUNK, columns=[spec.id.column, *spec.feature_columns]):
        table = pa.Table.from_batches([batch]).append_column("score", scores["score"].slice(offset, len(batch)))
        sample.add(table)
        offset += len(batch)
    capture = str(Path(paths["profile"]).with_name("capture.parquet"))
    pq.write_table(sample.table(table.schema), capture)
    total = sample.seen
    current = load_capture(capture, spec)
    loaded = time.perf_counter()
    result = drift_report(reference, current, spec, drift_share=DRIFT_SHARE)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "load_seconds": loaded - start,
        "html_bytes": len(result.html),
        "columns": {c["column"]: c["drifted"] for c in result.columns},
        "methods": {c["column"]: c["method"] for c in result.columns},
        "dataset_drift": result.dataset_drift,
        "prediction_drift": result.prediction["drifted"],
        "rows": [result.reference_rows, result.current_rows, total],
    }


def _profile(paths: dict[str, str], spec: DatasetSpec, args: argparse.Namespace) -> dict:
    from ml.drift import reference_profile
    from ml.io import write_parquet

    start = time.perf_counter()
    rows = pd.read_parquet(paths["reference"], columns=[spec.id.column, *spec.feature_columns, "prediction"])
    profile = reference_profile(rows, rows["prediction"].to_numpy(), spec, args.reference_rows, args.seed)
    write_parquet(profile, paths["profile"])
    return {"seconds": time.perf_counter() - start, "rows": len(profile)}


CHILDREN = {"plain": _plain, "ours": _ours, "profile": _profile}


def run_child(kind: str, paths: dict[str, str], args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh interpreter; its own peak RSS comes from wait4 on its pid."""
    out = Path(paths["profile"]).with_name(f"{kind}.json")
    cmd = [sys.executable, "-m", "benchmarks.drift", "--child", kind, "--paths", json.dumps(paths)]
    cmd += ["--out", str(out), "--reference-rows", str(args.reference_rows), "--seed", str(args.seed)]
    cmd += ["--current-rows", str(args.current_rows)]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {kind} failed with exit code {proc.returncode}")
    result = json.loads(out.read_text())
    result["peak_mb"] = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return result


def compare(n: int, args: argparse.Namespace, raw: pd.DataFrame, spec: DatasetSpec, folder: Path) -> dict:
    start = time.perf_counter()
    paths = generate(raw, spec, n, folder, args.seed)
    paths["profile"] = str(folder / "profile.parquet")
    print(f"N={n:,}: generated in {time.perf_counter() - start:.1f} s", flush=True)
    profile = run_child("profile", paths, args)
    plain = run_child("plain", paths, args)
    ours = run_child("ours", paths, args)
    features = spec.feature_columns
    agree = sum(plain["columns"][c] == ours["columns"][c] for c in features) / len(features)
    return {"n": n, "plain": plain, "ours": ours, "profile": profile, "agree": agree}


def report(rows: list[dict], spec: DatasetSpec) -> None:
    head = (
        f"{'N':>10} | {'plain s':>8} {'plain MB':>9} | {'ours s':>7} {'ours MB':>8} | {'time x':>7} {'mem x':>6} "
        f"| {'cols agree':>10} | {'dataset p/o':>11} | {'profile s':>9} {'MB':>6}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        p, o, f = r["plain"], r["ours"], r["profile"]
        print(
            f"{r['n']:>10,} | {p['seconds']:>8.2f} {p['peak_mb']:>9.0f} | {o['seconds']:>7.2f} {o['peak_mb']:>8.0f} "
            f"| {o['seconds'] / p['seconds']:>7.3f} {o['peak_mb'] / p['peak_mb']:>6.3f} | {r['agree']:>9.0%} "
            f"| {str(p['dataset_drift'])[0]}/{str(o['dataset_drift'])[0]} {'same' if p['dataset_drift'] == o['dataset_drift'] else 'DIFF':>6} "
            f"| {f['seconds']:>9.2f} {f['peak_mb']:>6.0f}"
        )
    print("\ntime x, mem x: ours / plain (targets at 1M rows: time <= 0.100, memory <= 0.333, columns >= 95% agree)")
    for r in rows:
        p, o = r["plain"], r["ours"]
        drifted_p = [c for c in spec.feature_columns if p["columns"][c]]
        drifted_o = [c for c in spec.feature_columns if o["columns"][c]]
        differ = [c for c in spec.feature_columns if p["columns"][c] != o["columns"][c]]
        methods = sorted({f"{p['methods'][c]} / {o['methods'][c]}" for c in spec.feature_columns})
        print(
            f"N={r['n']:,}: drifted plain {drifted_p}, ours {drifted_o}, differ {differ}; "
            f"ours prediction drift {o['prediction_drift']}; rows ref/cur/partition {o['rows']}; "
            f"ours reading {o['load_seconds']:.2f} s + report {o['seconds'] - o['load_seconds']:.2f} s; "
            f"methods plain/ours {methods}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reference-rows", type=int, default=20_000, help="reference_profile's max_rows")
    parser.add_argument("--current-rows", type=int, default=50_000, help="the capture's rows (drift.current_rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    spec = _spec()
    if args.child:
        result = CHILDREN[args.child](json.loads(args.paths), spec, args)
        Path(args.out).write_text(json.dumps(result))
        return
    raw = pd.read_parquet(ROOT / "data" / "raw" / "data.parquet")
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="keel-drift-bench-") as tmp:
            rows.append(compare(n, args, raw, spec, Path(tmp)))
    report(rows, spec)


if __name__ == "__main__":
    main()
