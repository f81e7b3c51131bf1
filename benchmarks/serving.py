"""The real-time endpoint under load: latency and throughput over real HTTP on loopback.

    python -m benchmarks.serving [--seconds 8] [--rate 500] [--canary-percent 50]

Builds a throw-away project (two registered versions, tests/serving/project.py), starts the endpoint
as `make serve` does (`python -m serving`, one uvicorn worker, a subprocess) and drives it from this
process with a raw asyncio HTTP/1.1 keep-alive client (one connection per concurrent caller):

- closed loop, single-row requests at concurrency 1, 8 and 32: p50 / p99 latency and requests/s;
- closed loop, 100-row requests at concurrency 8: rows/s;
- open loop at each of `--rates` single-row requests/s (sends on a fixed schedule, latency from the scheduled
  time, so a stall is not hidden), with the rollout off, with a canary of `--canary-percent` and with
  a shadow, side by side;
- beside them, the compute alone: `Predictor.predict` on the same rows in this process;
- the client's own limit: the same client against a server that answers at once without work.

`--keep DIR` keeps the project it builds, `--project DIR` reuses it; `--only compute closed open`
runs some parts.

Client and server share the machine's cores, so every figure includes the client's own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3

TRIVIAL_SERVER = """
import asyncio, sys
BODY = b'{"predictions":[{"request_id":"x","score":0.5,"model_version":1}]}'
RESPONSE = b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: %d\\r\\n\\r\\n%s" % (len(BODY), BODY)
async def handle(reader, writer):
    while True:
        try:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
        except asyncio.IncompleteReadError:  # the client closed the connection
            return
        length = next(int(l.split(b":")[1]) for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(RESPONSE)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a body, read the status and the body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int):
        self.reader, self.writer, self.host = reader, writer, f"{host}:{port}"

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, host, port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (path.encode(), self.host.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(b":")[1]) for line in lines[1:] if line.lower().startswith(b"content-length"))
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def summary(latencies: list[float], seconds: float, rows_per_request: int = 1) -> dict[str, float]:
    values = np.array(latencies) * 1000
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "requests_per_s": len(values) / seconds,
        "rows_per_s": len(values) * rows_per_request / seconds,
        "requests": len(values),
    }


async def closed_loop(port: int, bodies: list[bytes], concurrency: int, seconds: float) -> tuple[list[float], float]:
    connections = [await Connection.open("127.0.0.1", port) for _ in range(concurrency)]
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def caller(connection: Connection, offset: int) -> None:
        nonlocal failures
        i = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status, _ = await connection.post("/predict", bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - started)
            failures += status != 200
            i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(caller(c, n) for n, c in enumerate(connections)))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    return latencies, elapsed


async def open_loop(port: int, bodies: list[bytes], rate: float, seconds: float) -> tuple[list[float], float]:
    """Send at a fixed rate whatever the answers do; latency from each request's scheduled time."""
    idle: list[Connection] = [await Connection.open("127.0.0.1", port) for _ in range(16)]
    latencies: list[float] = []
    failures = 0

    async def one(scheduled: float, body: bytes) -> None:
        nonlocal failures
        connection = idle.pop() if idle else await Connection.open("127.0.0.1", port)
        status, _ = await connection.post("/predict", body)
        latencies.append(time.perf_counter() - scheduled)
        failures += status != 200
        idle.append(connection)

    tasks = []
    start = time.perf_counter()
    count = int(rate * seconds)
    for n in range(count):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, bodies[n % len(bodies)])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for connection in idle:
        connection.close()
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    return latencies, elapsed


def wait_until_up(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"no healthy server on port {port} after {timeout:.0f} s")


def wait_for_mode(port: int, mode: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=2).json()["mode"] == mode:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the server did not switch to mode {mode!r}")


def compute_only(predictor, records: list[dict], rows: int, seconds: float = 2.0) -> dict[str, float]:
    from serving.scoring import rows_batch

    times, n = [], 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 20:
        batch = [records[(n + i) % len(records)] for i in range(rows)]
        started = time.perf_counter()
        predictor.predict(rows_batch(batch, predictor))
        times.append(time.perf_counter() - started)
        n += rows
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": float(np.percentile(times, 99)) * 1000,
        "rows_per_s": rows / statistics.median(times),
    }


def line(name: str, figures: dict[str, float]) -> str:
    parts = [f"p50 {figures['p50_ms']:6.2f} ms", f"p99 {figures['p99_ms']:6.2f} ms"]
    if "requests_per_s" in figures:
        parts.append(f"{figures['requests_per_s']:8,.0f} req/s")
    parts.append(f"{figures['rows_per_s']:9,.0f} rows/s")
    return f"  {name:<44} " + "  ".join(parts)


def median_ms(function, repeat: int = 200) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run_compute(predictor, records: list[dict], spec) -> None:
    from serving.scoring import rows_batch
    from serving.validation import RowValidator

    print("\ncompute only (Predictor.predict in this process, features + model):")
    for rows in (1, 32, 100):
        print(line(f"{rows} row(s) per call", compute_only(predictor, records, rows)))
    validator, body = RowValidator(spec), orjson.dumps({"rows": records[:1]})
    batch = rows_batch(records[:1], predictor)
    features = predictor.matrix(batch)
    stages = {
        "JSON parse": lambda: orjson.loads(body),
        "row checks": lambda: validator.validate(records[:1]),
        "rows -> Arrow batch": lambda: rows_batch(records[:1], predictor),
        "features (Predictor.matrix: ml.features.feature_matrix)": lambda: predictor.matrix(batch),
        "model": lambda: predictor.model.predict(features),
    }
    print(
        "  where a single row's time goes (median per call): "
        + ", ".join(f"{name} {median_ms(function):.3f} ms" for name, function in stages.items())
    )


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (Linux /proc): what it used, whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scoring_counts(port: int) -> tuple[int, int]:
    import httpx

    counts = httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=10).json()["scoring"]
    return counts["predict_calls"], counts["rows"]


def run_closed(
    port: int, pid: int, trivial_port: int, singles: list[bytes], batches: list[bytes], seconds: float
) -> None:
    print(
        f"\nclosed loop over HTTP ({seconds:g} s each; rows/call: rows per Predictor.predict call in the server; "
        "CPU: the server's CPU time per request, which the machine's load does not inflate as much):"
    )
    asyncio.run(closed_loop(port, singles, 8, 1.0))  # warm-up
    for name, bodies, concurrency, rows_per_request in [
        ("1 row, concurrency 1", singles, 1, 1),
        ("1 row, concurrency 8", singles, 8, 1),
        ("1 row, concurrency 32", singles, 32, 1),
        ("100 rows, concurrency 8", batches, 8, 100),
    ]:
        calls, rows = scoring_counts(port)
        cpu = cpu_seconds(pid)
        latencies, elapsed = asyncio.run(closed_loop(port, bodies, concurrency, seconds))
        cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / len(latencies)
        after_calls, after_rows = scoring_counts(port)
        per_call = (after_rows - rows) / max(after_calls - calls, 1)
        figures = summary(latencies, elapsed, rows_per_request)
        print(line(name, figures) + f"  {per_call:5.1f} rows/call  CPU {cpu_ms:5.2f} ms/request")
    latencies, elapsed = asyncio.run(closed_loop(trivial_port, singles, 32, seconds / 2))
    print(line("client limit: no-work server, concurrency 32", summary(latencies, elapsed)))


def run_open(port: int, store_root: str, singles: list[bytes], rate: float, args: argparse.Namespace) -> None:
    """The three modes in turn, `ROUNDS` times in short slices, so a change in the machine's load
    falls on all of them alike; latencies pooled per mode."""
    from serving.state import RolloutState, write_state

    print(f"\nopen loop, {rate:g} single-row requests/s ({args.seconds:g} s per mode, in {ROUNDS} slices):")
    labels = {"off": "champion only", "canary": f"canary {args.canary_percent:g} %", "shadow": "shadow"}
    pooled: dict[str, list[float]] = {mode: [] for mode in labels}
    elapsed: dict[str, float] = dict.fromkeys(labels, 0.0)
    for _ in range(ROUNDS):
        for mode in labels:
            state = RolloutState(
                mode=mode,
                challenger_version=None if mode == "off" else 2,
                canary_percent=args.canary_percent if mode == "canary" else 0.0,
                reason="benchmark",
                decided_by="benchmarks/serving.py",
            )
            write_state(store_root, state)
            wait_for_mode(port, mode)
            latencies, seconds = asyncio.run(open_loop(port, singles, rate, args.seconds / ROUNDS))
            pooled[mode] += latencies
            elapsed[mode] += seconds
    write_state(store_root, RolloutState(mode="off", reason="benchmark done", decided_by="benchmarks/serving.py"))
    p99 = {}
    for mode, label in labels.items():
        figures = summary(pooled[mode], elapsed[mode])
        p99[mode] = figures["p99_ms"]
        print(line(label, figures))
    for mode in ("canary", "shadow"):
        print(f"  p99 {mode} / champion only: {p99[mode] / p99['off']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load test")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[500.0, 200.0], help="single-row requests/s of the open-loop tests"
    )
    parser.add_argument("--canary-percent", type=float, default=10.0)
    parser.add_argument("--only", choices=["compute", "closed", "open"], nargs="+", help="run only these parts")
    parser.add_argument("--project", type=Path, help="reuse this benchmark project (made by a previous run's --keep)")
    parser.add_argument("--keep", type=Path, help="build the project here and keep it")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"  # as the server runs (serving/__main__.py)

    from ml.params import load_params
    from resources.registry import ModelRegistry
    from resources.storage import ArtifactStore
    from serving.models import ModelSource
    from tests.serving.project import example_rows, make_project

    parts = set(args.only or ["compute", "closed", "open"])
    load = os.getloadavg()
    print(f"cores: {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start")
    with tempfile.TemporaryDirectory(prefix="keel-bench-serving-") as tmp:
        project = args.project or args.keep or Path(tmp) / "project"
        if args.project:
            registry = ModelRegistry(root=str(project / "var" / "mlflow"))
        else:
            registry = make_project(project)
            settings = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
            settings["serving"]["poll_seconds"] = 0.5  # switch rollout modes quickly between tests
            (project / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        store = ArtifactStore(root=str(project / "var" / "storage"))
        predictor = ModelSource(registry, store, "telco_churn").load(1).predictor
        records = orjson.loads(example_rows().to_json(orient="records"))
        singles = [orjson.dumps({"rows": [{**r, "request_id": f"r{i}"}]}) for i, r in enumerate(records)]
        batches = [orjson.dumps({"rows": records[i : i + 100]}) for i in range(0, len(records) - 100, 100)]

        port, trivial_port = free_port(), free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "serving", "--project-dir", str(project), "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        trivial = subprocess.Popen([sys.executable, "-c", TRIVIAL_SERVER, str(trivial_port)])
        try:
            wait_until_up(port, server)
            if "compute" in parts:
                run_compute(predictor, records, load_params(project / "params.yaml").dataset)
            if "closed" in parts:
                run_closed(port, server.pid, trivial_port, singles, batches, args.seconds)
            if "open" in parts:
                for rate in args.rates:
                    run_open(port, store.root, singles, rate, args)
        finally:
            for process in (server, trivial):
                process.terminate()
                process.wait(timeout=30)
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
