"""Dagster and MLflow on SQLite against the team instance's Postgres, side by side, under the real daemon.

    .venv/bin/python -m benchmarks.team_storage [--days 30] [--trainings 8] [--backends sqlite,postgres] [--logs DIR]

In a throw-away copy of the project (DVC stages run, a champion trained, `--days` simulated daily files),
for each backend in turn:

- **sqlite**: the Dagster instance on SQLite files and MLflow as a SQLite file opened by every process
  (the laptop defaults);
- **postgres**: the Dagster instance on Postgres and MLflow's tracking server on Postgres with its
  basic-auth app (the team instance, team/).

Both use team/dagster.yaml's settings apart from storage (queued runs, pools, run monitoring and
retries), with up to `--trainings` runs at once, a gRPC code server and one daemon. Measured: a backfill
of `nightly_scoring` over the days (queued with `dagster job backfill`, run by the daemon), and
separately `--trainings` `train_model` runs launched together: wall time from submission until every run
finished, failed runs (retries included; of them, those that never started because the code server did
not answer the daemon in time or the run's process was not up within the start timeout, which says the
machine was busy, not which storage it used), and how often
"database is locked" appears in the runs' event logs and the services' output. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCKED = "database is locked"
# A run that never started on a busy machine: the code server did not answer the daemon in time, or the
# run's process was not up within run monitoring's start timeout.
NOT_STARTED = ("DagsterUserCodeUnreachableError", "DEADLINE_EXCEEDED", "START_TIMEOUT")


def copy_project(dest: Path) -> Path:
    """The end-to-end tests' project copy, with its DVC stages run."""
    from tests.conftest import _copy_project

    _copy_project(dest)
    subprocess.run([str(BIN / "python"), "-m", "dvc", "repro", "-q"], cwd=dest, check=True, env=_path_env())
    return dest


def _path_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def write_days(project: Path, days: int) -> list[str]:
    import ml.io
    from ml.params import load_params
    from ml.simulate import simulate_day, unseen_rows, write_snapshot

    params = load_params(project / "params.yaml")
    rows = unseen_rows(ml.io.read_parquet(params.raw_uri), params)
    dates = []
    for day in range(1, days + 1):
        snapshot, _ = simulate_day(rows, params.dataset, params.simulation, day)
        write_snapshot(snapshot, params.daily, day, project)
        dates.append(str(params.daily.date(day)))
    return dates


def create_database(url: str, name: str) -> None:
    """The Dagster database, as team/service.sh creates it before the code server and the daemon start."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        if not db.execute(sa.text("select 1 from pg_database where datname = :n"), {"n": name}).first():
            db.execute(sa.text(f'create database "{name}"'))
    engine.dispose()


class Backend:
    """A Dagster home, a code server and a daemon for one storage backend, with MLflow beside them."""

    def __init__(self, name: str, project: Path, folder: Path, team, concurrent: int):
        self.name, self.project, self.folder, self.team = name, project, folder, team
        settings = yaml.safe_load((project / "team" / "dagster.yaml").read_text())
        settings["concurrency"]["runs"]["max_concurrent_runs"] = concurrent
        settings["concurrency"]["runs"]["tag_concurrency_limits"] = []
        if name == "sqlite":
            settings.pop("storage")  # SQLite files in the Dagster home, as orchestration/dagster.yaml
        self.home = folder / f"{name}-home"
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(settings))
        self.processes: list[subprocess.Popen] = []
        pg = team.shell_env()
        admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": pg["MLFLOW_AUTH_ADMIN_PASSWORD"]}
        if name == "sqlite":
            mlflow = {
                "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow-sqlite' / 'mlflow.db'}",
                "KEEL_INSTANCE": "local",
            }
            (folder / "mlflow-sqlite").mkdir()
        else:
            mlflow = {"MLFLOW_TRACKING_URI": pg["MLFLOW_TRACKING_URI"], "KEEL_INSTANCE": "team", **admin}
            create_database(team.pg_url("postgres"), pg["KEEL_DAGSTER_DB"])
        keys = ("KEEL_PG_", "KEEL_DAGSTER_DB", "KEEL_CODE_SERVER_", "DAGSTER_GRPC_TIMEOUT_SECONDS")
        self.env = _path_env(
            DAGSTER_HOME=str(self.home), **{k: v for k, v in pg.items() if k.startswith(keys)}, **mlflow
        )
        self.env.pop("KEEL_BIN", None)

    def start(self) -> None:
        port = self.env["KEEL_CODE_SERVER_PORT"]
        for name, command in (
            ("code", ["dagster", "code-server", "start", "-h", "127.0.0.1", "-p", port, "-m", "orchestration.definitions",
                      "-d", str(self.project), "--location-name", "keel"]),
            ("daemon", ["dagster-daemon", "run", "-w", "team/workspace.yaml"]),
        ):  # fmt: skip
            log = (self.folder / f"{self.name}-{name}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [str(BIN / command[0]), *command[1:]],
                    cwd=self.project,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)  # the code server ignores SIGTERM for longer
                process.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """A Dagster CLI command against this backend's instance and code server; retried until the server answers."""
        deadline = time.monotonic() + 300
        while True:
            done = subprocess.run(
                [str(BIN / "dagster"), *args], cwd=self.project, env=self.env, capture_output=True, text=True
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                return done
            time.sleep(3)

    def train_champion(self) -> None:
        """The champion the backfill scores with, trained in this process on this backend (not measured)."""
        from tests.conftest import train

        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                if not train(self.project, instance, from_raw_data=True).success:
                    raise SystemExit(f"{self.name}: training the champion failed")
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def wait_runs(self, instance: dg.DagsterInstance, job: str, expected: int, since: float) -> dict:
        """Wait until `expected` runs of `job` created after `since` (epoch seconds; retries not counted) and
        all their retries finished; their wall time, failures and "database is locked" events."""
        runs_filter = dg.RunsFilter(job_name=job, created_after=datetime.fromtimestamp(since, UTC))
        settled_since = None
        while True:
            runs = instance.get_runs(runs_filter)
            firsts = [r for r in runs if "dagster/parent_run_id" not in r.tags]
            done = len(firsts) >= expected and all(r.is_finished for r in runs)
            settled_since = (settled_since or time.monotonic()) if done else None
            if settled_since and time.monotonic() - settled_since > 20:  # no retry on its way
                break
            if time.time() - since > 7200:
                raise SystemExit(f"{self.name}: {job} runs still unfinished after 2 h")
            time.sleep(3)
        records = instance.get_run_records(runs_filter)
        texts = {r.run_id: _event_text(instance, r.run_id) for r in runs}
        failed = [r for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        return {
            "wall": max(r.end_time or 0 for r in records) - since,
            "runs": len(runs),
            "failed": len(failed),
            "not_started": sum(any(u in texts[r.run_id] for u in NOT_STARTED) for r in failed),
            "ok": sum(_final_status(runs, r) == dg.DagsterRunStatus.SUCCESS for r in firsts),
            "locked_events": sum(text.count(LOCKED) for text in texts.values()),
            "why_failed": sorted({_why_failed(instance, r.run_id) for r in failed}),
        }


def _event_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """A run's event log as text: the messages and the events' data (where a launch error is kept)."""
    return "\n".join(
        f"{event.message or ''} {event.dagster_event.event_specific_data if event.dagster_event else ''}"
        for event in instance.all_logs(run_id)
    )


def _why_failed(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first line of a failed run's first error, so a failure can be told from a busy machine."""
    failures = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ENGINE_EVENT}
    for event in instance.all_logs(run_id, of_type=failures):
        error = getattr(event.dagster_event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:  # Dagster's wrapper names the step, its cause the error
            error = error.cause
        if error is not None:
            return f"{run_id[:8]}: {error.message.strip().splitlines()[0][:300]}"
    return f"{run_id[:8]}: no error recorded"


def _final_status(runs, first) -> dg.DagsterRunStatus:
    """The status of the last retry of `first` (or of `first` when it was not retried)."""
    chain = [r for r in runs if r.tags.get("dagster/root_run_id") == first.run_id]
    last = max(chain, key=lambda r: int(r.tags.get("dagster/retry_number", 0)), default=first)
    return last.status


def measure(backend: Backend, dates: list[str], trainings: int) -> dict:
    backend.start()
    results = {}
    try:
        with dg.DagsterInstance.from_config(str(backend.home)) as instance:
            if dates:
                since = time.time()
                queued = backend.cli(
                    "job", "backfill", "-w", "team/workspace.yaml", "-j", "nightly_scoring",
                    "--from", dates[0], "--to", dates[-1], "--noprompt",
                )  # fmt: skip
                if queued.returncode:
                    raise SystemExit(f"{backend.name}: backfill not queued:\n{queued.stdout}\n{queued.stderr}")
                results["backfill"] = backend.wait_runs(instance, "nightly_scoring", len(dates), since)
            # The launches below are not retried: the code server must answer first (it does already when a
            # backfill ran before them).
            listed = backend.cli("job", "list", "-w", "team/workspace.yaml")
            if listed.returncode:
                raise SystemExit(f"{backend.name}: the code server did not answer:\n{listed.stdout}\n{listed.stderr}")
            since = time.time()
            launches = [
                subprocess.Popen(
                    [str(BIN / "dagster"), "job", "launch", "-w", "team/workspace.yaml", "-j", "train_model"],
                    cwd=backend.project,
                    env=backend.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(trainings)
            ]
            for launch in launches:
                launch.wait()
            results["training"] = backend.wait_runs(instance, "train_model", trainings, since)
            results["training"]["launch_failures"] = sum(launch.returncode != 0 for launch in launches)
    finally:
        backend.stop()
    logs = "".join(p.read_text(errors="replace") for p in backend.folder.glob(f"{backend.name}-*.log"))
    results["locked_in_service_logs"] = logs.count(LOCKED)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30, help="days in the nightly_scoring backfill (0: no backfill)")
    parser.add_argument("--trainings", type=int, default=8, help="train_model runs launched together")
    parser.add_argument("--backends", default="sqlite,postgres", help="which to measure, comma-separated")
    parser.add_argument(
        "--logs", type=Path, help="keep the services' output (Dagster, MLflow, Postgres) in this folder"
    )
    args = parser.parse_args()
    # SIGTERM stops the services as Ctrl-C does (a background job ignores SIGINT).
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    from tests.team.services import Team, postgres_missing

    if problem := postgres_missing():
        raise SystemExit(problem)
    folder = Path(tempfile.mkdtemp(prefix="keel-bench-team-"))
    project = copy_project(folder / "project")
    dates = write_days(project, args.days)
    team = Team.create(project)
    rows = {}
    try:
        team.start("postgres")
        team.start("mlflow")
        team.wait_http("mlflow", f"{team.mlflow_url}/health", time.monotonic() + 300)
        for name in args.backends.split(","):
            backend = Backend(name, project, folder, team, concurrent=args.trainings)
            os.environ.update(
                {k: v for k, v in backend.env.items() if k.startswith("KEEL_")}
            )  # this process's instance
            backend.train_champion()
            print(f"{name}: champion trained; measuring", flush=True)
            rows[name] = measure(backend, dates, args.trainings)
            print(f"{name}: {rows[name]}", flush=True)
    finally:
        team.stop_all()
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in [*folder.glob("*.log"), *team.folder.glob("*.log")]:
                shutil.copy(log, args.logs / log.name)
        team.remove()
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\n{'':<10}{'workload':<28}{'wall s':>8}{'runs':>6}{'failed':>8}{'of which not started':>22}{'ok':>5}"
        f"{'locked (events/logs)':>22}"
    )
    for name, result in rows.items():
        for workload, label in (
            ("backfill", f"backfill, {args.days} days"),
            ("training", f"{args.trainings} trainings at once"),
        ):
            if workload not in result:
                continue
            r = result[workload]
            print(
                f"{name:<10}{label:<28}{r['wall']:>8.0f}{r['runs']:>6}{r['failed']:>8}{r['not_started']:>22}{r['ok']:>5}"
                f"{r['locked_events']:>14}/{result['locked_in_service_logs']}"
            )
    for name, result in rows.items():
        for workload in ("backfill", "training"):
            for why in result.get(workload, {}).get("why_failed", []):
                print(f"{name} {workload} failed run {why}")


if __name__ == "__main__":
    main()
