"""One training run in its own process, as a run launcher starts it, pausing where two runs could mix.

    python -m tests.assets.interleaved_run PROJECT NAME RUN_CONFIG_JSON SYNC_DIR

Both gates start only once both candidates exist; run B's gate runs after run A's is recorded, and
run A registers only after run B's gate has been recorded: so when A's gate and A's registration
run, "the latest candidate" or "the latest gate" in the instance is run B's. Prints the run's id and outcome as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dagster as dg

from assets.candidate_model import candidate_model
from assets.evaluation_gate import CHECK_NAME
from data_checks.asset_checks import latest_evaluation
from orchestration.deployments import local
from resources.records import RecordIOManager
from tests.conftest import train

GATE = dg.AssetCheckKey(candidate_model.key, CHECK_NAME)
TIMEOUT = 600


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.2)


class InterleavedRecords(RecordIOManager):
    """The project's IO manager, pausing before the gate and before run A's registration read the candidate."""

    name: str
    sync_dir: str

    def load_input(self, context: dg.InputContext):
        if context.asset_key == candidate_model.key:
            sync, run_id = Path(self.sync_dir), context.step_context.run_id
            (sync / f"run-{self.name}").write_text(run_id)
            if CHECK_NAME in context.step_context.step.key:  # the gate's step
                (sync / f"gate-{self.name}").touch()
                wait_for(lambda: len(list(sync.glob("gate-*"))) == 2, "both gates")  # both candidates exist
                if self.name == "B":  # B's gate is recorded after A's: the latest gate is B's
                    self.wait_for_gate(context, sync, "A")
            elif self.name == "A":  # run A's registration: only once run B's gate is in the event log
                self.wait_for_gate(context, sync, "B")
        return super().load_input(context)

    @staticmethod
    def wait_for_gate(context: dg.InputContext, sync: Path, other: str) -> None:
        wait_for(lambda: (sync / f"run-{other}").exists(), f"run {other}")
        run_id = (sync / f"run-{other}").read_text()
        wait_for(
            lambda: latest_evaluation(context.instance, GATE, lambda record: record.run_id == run_id) is not None,
            f"run {other}'s gate",
        )


def main(project: str, name: str, run_config: str, sync_dir: str) -> None:
    root = Path(project)
    resources = local(root)
    io_manager = InterleavedRecords(storage=resources["storage"], name=name, sync_dir=sync_dir)
    with dg.DagsterInstance.from_config(str(root / "var" / "dagster")) as instance:
        result = train(root, instance, run_config=json.loads(run_config), io_manager=io_manager)
    print(json.dumps({"run_id": result.run_id, "success": result.success}))


if __name__ == "__main__":
    main(*sys.argv[1:])
