"""What the cloud backends share: one platform job per entry point call, run the same way on every cloud.

`CloudJobCompute.run` is the whole life of a job. A backend (SageMaker, Vertex AI, Azure ML) only
says how its platform does each part:

- `connect()`: the clients one call uses;
- `build_request(...)`: the platform's job request, checked before anything starts;
- `pipes_channels(...)`: the Pipes context injector and message reader (the cloud's object store);
- `replicate(request, n)`: the same job on n instances (a sharded scoring day), each with its rank;
- `start(...)`: create the job with the Pipes bootstrap in its environment, return the job's id;
- `describe(...)`: the job's state as a `JobState`; `is_transient(error)`: whether a failed read is retried;
- `cancel(...)`: stop the job when the Dagster run is interrupted;
- `collect_outputs(...)`: after success, bring outputs to the URIs the asset asked for (when the
  platform writes them somewhere of its own);
- `job_metadata(...)`: what the materialization and a failure record about the job (its console URL);
- `job_usage(...)`: what the job used, for its cost (ml/cost.py prices it): instance type and count,
  and the seconds the platform billed or the job ran.
"""

from __future__ import annotations

import re
import time
import uuid
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field

from resources.compute import ComputeBackend, entry_point_command

# A state read that fails this many times in a row (network, throttling, 5xx) fails the step; fewer are retried.
MAX_READ_FAILURES = 5
JOB_USAGE = "job_usage"  # the completed invocation's metadata key for job_usage()


def job_name(
    prefix: str, module: str, run_id: str, *, max_length: int, suffix_length: int = 6, suffix: str | None = None
) -> str:
    """`<prefix>-<module>-<run id[:8]>-<random>`: unique per call, of [a-zA-Z0-9-], at most `max_length` chars."""
    suffix = suffix or uuid.uuid4().hex[:suffix_length]
    tail = f"-{run_id[:8]}-{suffix}"
    head = re.sub(r"[^a-zA-Z0-9-]+", "-", f"{prefix}-{module}").strip("-") or "keel"
    return re.sub(r"-{2,}", "-", f"{head[: max_length - len(tail)].rstrip('-')}{tail}")


@dataclass(frozen=True)
class Platform:
    """How logs and errors speak of one platform's jobs."""

    job: str  # "SageMaker training job"
    cancelling: str  # the log's word for the cancel call: "stopping" (StopTrainingJob)
    succeeded: str  # the log's word for success: "completed"
    max_name_length: int
    name_suffix_length: int = 6


@dataclass(frozen=True)
class JobState:
    """One read of a job: the platform's status and what it means."""

    status: str  # as the platform's console shows it: "InProgress", "JOB_STATE_RUNNING", "Running"
    terminal: bool
    succeeded: bool = False
    detail: str = ""  # a secondary status worth logging with it (SageMaker's "Downloading")
    failure_reason: str = ""  # the platform's reason, for a terminal state that is not success
    response: Any = None  # the platform's answer, for collect_outputs


def _wait(seconds: float) -> None:
    """The pause between state reads (tests replace it)."""
    time.sleep(seconds)


class CloudJobCompute(ComputeBackend):
    """Runs an `ml` entry point as one job on a cloud platform; subclasses make the platform's calls."""

    platform: ClassVar[Platform]

    poll_interval_seconds: float = Field(default=30.0, gt=0, description="Seconds between reads of the job's state.")
    message_interval_seconds: float = Field(default=5.0, gt=0, description="Seconds between Pipes message reads.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for the job (no secrets)."
    )
    job_name_prefix: str = Field(default="keel", description="First part of every job's name.")

    # ---- what each platform says ----

    @abstractmethod
    def connect(self) -> Any:
        """The clients one call uses (passed to every hook below as `clients`)."""

    @abstractmethod
    def build_request(
        self, clients: Any, name: str, module: str, inputs: Mapping[str, str], outputs: Mapping[str, str], run_id: str
    ) -> Any:
        """The platform's job request for one entry point call, without the Pipes bootstrap; refuses what cannot run."""

    @abstractmethod
    def pipes_channels(self, clients: Any, name: str) -> tuple[dg.PipesContextInjector, dg.PipesMessageReader]:
        """Where the Pipes context goes and the messages come back from for job `name`."""

    @abstractmethod
    def start(self, clients: Any, request: Any, bootstrap_env: Mapping[str, str]) -> str:
        """Create the job with `bootstrap_env` added to its environment; the id `describe` and `cancel` take."""

    @abstractmethod
    def describe(self, clients: Any, job: str) -> JobState:
        """One read of the job's state."""

    @abstractmethod
    def cancel(self, clients: Any, job: str) -> str | None:
        """Ask the platform to stop the job; the status it ended in when the platform waits for that, else None."""

    @abstractmethod
    def job_metadata(self, job: str) -> dict[str, Any]:
        """The job's name and console link, for the materialization and a failure's metadata."""

    def is_transient(self, error: Exception) -> bool:
        """Whether a failed `describe` is worth another try (a dropped connection, throttling, a 5xx)."""
        return False

    def replicate(self, request: Any, replicas: int) -> Any:
        """The request run as `replicas` instances of the same command, each told its rank by the platform."""
        raise NotImplementedError(f"{type(self).__name__} does not run replicas")

    def collect_outputs(
        self, context: dg.AssetExecutionContext, clients: Any, state: JobState, outputs: Mapping[str, str]
    ) -> None:
        """After success: put the outputs at the URIs the asset asked for. Jobs that write them in place do nothing."""

    def job_usage(
        self, clients: Any, job: str, state: JobState, observed_seconds: float, replicas: int = 1
    ) -> dict[str, Any] | None:
        """What the finished job used: platform, instance_type, instance_count, and `seconds` (the job's
        duration) or `billable_seconds`/`training_seconds`. `observed_seconds` is creation to end as
        this process saw it (with queueing), for a platform that reports no duration."""
        return None

    # ---- the one way a job runs ----

    def run(
        self,
        context: dg.AssetExecutionContext,
        module: str,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        extras: Mapping[str, Any] | None = None,
        replicas: int = 1,
    ) -> dg.PipesClientCompletedInvocation:
        platform = self.platform
        name = job_name(
            self.job_name_prefix,
            module,
            context.run_id,
            max_length=platform.max_name_length,
            suffix_length=platform.name_suffix_length,
        )
        clients = self.connect()
        request = self.build_request(clients, name, module, inputs, outputs, context.run_id)
        if replicas > 1:
            request = self.replicate(request, replicas)
        injector, reader = self.pipes_channels(clients, name)
        with dg.open_pipes_session(
            context=context, context_injector=injector, message_reader=reader, extras=dict(extras or {})
        ) as session:
            launched = time.monotonic()
            try:
                job = self.start(clients, request, session.get_bootstrap_env_vars())
            except Exception as error:
                raise dg.Failure(description=f"cannot create {platform.job} {name}: {error}") from error
            label = name if job == name else f"{name} ({job})"
            command = " ".join(entry_point_command("python", module, inputs, outputs))
            context.log.info(f"started {platform.job} {label}: {command}")
            try:
                state = self._wait_for_end(context, clients, job)
            except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
                self._cancel(context, clients, job)
                raise  # the interruption ends the step, whatever the cancel did
            if not state.succeeded:
                reason = state.failure_reason or f"{platform.job} ended without a reason"
                raise dg.Failure(
                    description=f"{platform.job} {label} ended {state.status}: {reason}",
                    metadata={**self.job_metadata(job), "status": state.status, "failure_reason": reason},
                )
            context.log.info(f"{platform.job} {name} {platform.succeeded}")
        self.collect_outputs(context, clients, state, outputs)
        usage = self.job_usage(clients, job, state, time.monotonic() - launched, replicas)
        metadata = {**self.job_metadata(job), **({JOB_USAGE: dg.MetadataValue.json(usage)} if usage else {})}
        return dg.PipesClientCompletedInvocation(session, metadata=metadata)

    def _wait_for_end(self, context: dg.AssetExecutionContext, clients: Any, job: str) -> JobState:
        seen, failures = None, 0
        while True:
            try:
                state = self.describe(clients, job)
            except Exception as error:
                failures += 1
                if not self.is_transient(error) or failures >= MAX_READ_FAILURES:
                    raise dg.Failure(
                        description=f"cannot read the state of {self.platform.job} {job}: {error}"
                    ) from error
                context.log.warning(f"reading {self.platform.job} {job} failed ({error}); retrying")
                _wait(self.poll_interval_seconds)
                continue
            failures = 0
            shown = f"{state.status} ({state.detail})" if state.detail else state.status
            if shown != seen:  # log transitions, not every poll
                context.log.info(f"{self.platform.job} {job}: {shown}")
                seen = shown
            if state.terminal:
                return state
            _wait(self.poll_interval_seconds)

    def _cancel(self, context: dg.AssetExecutionContext, clients: Any, job: str) -> None:
        context.log.warning(f"run interrupted: {self.platform.cancelling} {self.platform.job} {job}")
        try:
            ended = self.cancel(clients, job)
        except Exception as error:  # not created yet, or already ended: the interruption stays the error
            context.log.error(f"could not cancel {self.platform.job} {job}: {error}")
            return
        if ended:
            context.log.warning(f"run interrupted: {self.platform.job} {job} was canceled and ended {ended}")
