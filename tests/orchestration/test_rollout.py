"""A rollout on a Dagster instance: start_canary, the sensor canary_bake's ticks, and conclude_rollout.

Real registered versions (LightGBM artifacts trained on the Telco rows) and a request log written in
the serving format with each version's real scores; only the latencies are made to order.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from ml.artifact import manifest_sha256
from ml.io import read_parquet
from ml.predictor import Predictor
from ml.train import train_artifact
from orchestration.alerts import monitoring_alerts
from orchestration.definitions import definitions
from orchestration.deployments import local
from resources.registry import CHALLENGER, CHAMPION
from serving.request_log import RequestLog, input_columns
from serving.state import read_state, state_uri
from tests.conftest import REPO

ROLLOUT = {"bake_minutes": 0, "min_requests": 100, "max_p99_ratio": 1.5, "canary_percent": 20}


@pytest.fixture(scope="module")
def artifacts(training_inputs, tmp_path_factory) -> list[Path]:
    """Three models of the same data: seeds 1, 2, 3."""
    import json

    table = read_parquet(training_inputs["features"])
    state = json.loads(Path(training_inputs["state"]).read_text())
    folder = tmp_path_factory.mktemp("artifacts")
    made = []
    for seed in (1, 2, 3):
        config = training_inputs["training_config"].model_copy(update={"seed": seed})
        directory = folder / f"model-{seed}"
        directory.mkdir()
        train_artifact(table, state, config, directory)
        made.append(directory)
    return made


@pytest.fixture
def root(tmp_path: Path, artifacts: list[Path]) -> Path:
    """A project folder: params.yaml (short bake) and an MLflow registry with v1 champion, v2 and v3 registered."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["serving"] = {**params.get("serving", {}), "rollout": ROLLOUT}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    registry = local(tmp_path)["registry"]
    name = registry.model_name
    for n, artifact in enumerate(artifacts, start=1):
        run_id = registry.log_training_run(name, f"model-{n}", {}, {}, {}, artifact)
        assert registry.register(name, run_id, {"manifest_sha256": manifest_sha256(artifact)}) == n
    registry.move_alias(name, CHAMPION, 1, None, "first model", "test")
    return tmp_path


def serve(root: Path, holdout: pd.DataFrame, artifacts: list[Path], canary: int, canary_latency: float) -> None:
    """Log the holdout rows as requests: 20 % to the canary version, the rest to champion v1."""
    resources = local(root)
    spec = resources["params"].load().dataset
    log = RequestLog(resources["storage"].root, spec, flush_seconds=3600)
    rng = np.random.default_rng(canary)
    arms = np.where(rng.random(len(holdout)) < 0.2, "canary", "champion")
    now = dt.datetime.now(dt.UTC)
    entries = []
    for arm, version, latency in (("champion", 1, 4.0), ("canary", canary, canary_latency)):
        rows = holdout[arms == arm]
        predictor = Predictor.load(artifacts[version - 1])
        scores = predictor.predict(rows)
        for i, (record, score) in enumerate(zip(rows[input_columns(spec)].to_dict("records"), scores, strict=True)):
            entries.append(
                {
                    "request_id": f"{arm}-{i}",
                    "received_at": now,
                    "arm": arm,
                    "model_version": version,
                    "manifest_sha256": predictor.manifest.get("sha256", ""),
                    "latency_ms": float(rng.gamma(4, latency / 4)),
                    "status": 200,
                    "score": float(score),
                    "served": True,
                    **record,
                }
            )
    log.append(entries)
    log.close()


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, root: Path):
    resources = local(root)
    with dg.build_sensor_context(
        instance=instance, sensor_name="canary_bake", definitions=defs, resources=resources
    ) as context:
        return defs.resolve_sensor_def("canary_bake").evaluate_tick(context)


def run_job(defs, instance, name: str, config: dict, tags: dict | None = None) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(name)
    op = "start_rollout" if name == "start_canary" else "conclude"
    return job.execute_in_process(
        run_config={"ops": {op: {"config": config}}}, instance=instance, tags=tags, raise_on_error=False
    )


def deployments(instance) -> list[dict]:
    records = instance.fetch_materializations(dg.AssetKey("deployment"), limit=100).records
    return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in reversed(records)]


def test_a_slow_canary_is_rolled_back_and_a_good_one_promoted(root, artifacts, training_inputs):
    holdout = training_inputs["holdout"]
    defs = definitions(local(root))
    registry, store = local(root)["registry"], local(root)["storage"].root
    name = registry.model_name
    with dg.instance_for_test() as instance:
        assert "no canary" in tick(defs, instance, root).skip_message

        started = run_job(defs, instance, "start_canary", {"version": 2, "reason": "try seed 2"})
        assert started.success
        state = read_state(store)
        assert (state.mode, state.challenger_version, state.canary_percent) == ("canary", 2, 20.0)
        assert registry.alias_version(name, CHALLENGER) == 2
        assert "too few requests" in tick(defs, instance, root).skip_message

        serve(root, holdout, artifacts, canary=2, canary_latency=40.0)  # ten times slower than the champion
        result = tick(defs, instance, root)
        [request] = result.run_requests
        assert read_state(store).mode == "off"  # traffic is back on the champion before any run
        assert "latency p99" in read_state(store).reason
        assert tick(defs, instance, root).skip_message.startswith("no canary")

        concluded = run_job(defs, instance, "conclude_rollout", request.run_config["ops"]["conclude"]["config"])
        assert concluded.success
        assert registry.champion() == 1 and registry.alias_version(name, CHALLENGER) is None
        last = registry.alias_history(name, CHALLENGER)[-1]
        assert (last.kind, last.from_version, last.to_version) == ("rollback", 2, None)
        assert "latency p99" in last.reason and "max_p99_ratio 1.5" in last.reason
        rolled = deployments(instance)[-1]
        assert rolled["mode"] == "off" and rolled["outcome"] == "rollback" and rolled["rolled_back_version"] == 2
        assert rolled["p99_ms_canary"] > 1.5 * rolled["p99_ms_champion"] and rolled["requests_canary"] >= 100
        alerts, _ = monitoring_alerts(instance, '{"after": 0, "drifting": false}')
        assert any("challenger rolled back: v2 -> none" in text and "latency p99" in text for text in alerts), alerts

        # A good challenger: as fast as the champion, scores like it; clean after the (zero-minute) bake.
        shutil.rmtree(Path(store) / "serving" / "requests")
        assert run_job(defs, instance, "start_canary", {"version": 3, "reason": "try seed 3"}).success
        serve(root, holdout, artifacts, canary=3, canary_latency=4.0)
        [request] = tick(defs, instance, root).run_requests
        config = request.run_config["ops"]["conclude"]["config"]
        assert config["outcome"] == "promote", config["reason"]
        assert read_state(store).mode == "canary"  # promotion happens in the run, not the tick
        assert run_job(defs, instance, "conclude_rollout", config).success
        assert registry.champion() == 3 and registry.alias_version(name, CHALLENGER) is None
        promoted = registry.alias_history(name, CHAMPION)[-1]
        assert (promoted.from_version, promoted.to_version) == (1, 3) and "clean after" in promoted.reason
        state = read_state(store)
        assert state.mode == "off" and "v3 promoted" in state.reason
        assert deployments(instance)[-1]["champion_version"] == 3


def test_a_promotion_is_refused_when_the_rollout_changed(root):
    defs = definitions(local(root))
    with dg.instance_for_test() as instance:
        assert run_job(defs, instance, "start_canary", {"version": 2, "reason": "try"}).success
        config = {"outcome": "promote", "version": 3, "reason": "stale decision"}
        result = run_job(defs, instance, "conclude_rollout", config)
        assert not result.success
        assert "the rollout changed" in str(result.all_events)
        assert local(root)["registry"].champion() == 1


def test_a_stray_log_file_and_a_labels_file_with_float_ids_are_named_and_the_bake_goes_on(
    root, artifacts, training_inputs
):
    defs = definitions(local(root))
    params, store = local(root)["params"].load(), local(root)["storage"].root
    today = dt.datetime.now(dt.UTC).date().isoformat()
    with dg.instance_for_test() as instance:
        assert run_job(defs, instance, "start_canary", {"version": 3, "reason": "try seed 3"}).success
        folder = Path(store) / "serving" / "requests" / f"day={today}"
        folder.mkdir(parents=True)
        (folder / "broken.parquet").write_text("not a parquet file")
        labels = Path(params.labels_uri(today))
        labels.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({params.dataset.id.column: [1.5, 2.5], params.dataset.target.column: ["Yes", "No"]}).to_parquet(
            labels
        )

        waiting = tick(defs, instance, root).skip_message
        assert "too few requests" in waiting and "ignored 2 file(s)" in waiting
        assert "broken.parquet: not a request-log Parquet file" in waiting
        assert f"id column {params.dataset.id.column!r} holds float64 values" in waiting

        serve(root, training_inputs["holdout"], artifacts, canary=3, canary_latency=4.0)
        [request] = tick(defs, instance, root).run_requests  # judged on the good files
        assert request.run_config["ops"]["conclude"]["config"]["outcome"] == "promote"


def tick_with(defs: dg.Definitions, instance: dg.DagsterInstance, root: Path, cursor: str | None):
    """A tick that carries the sensor's cursor on, as the daemon does."""
    with dg.build_sensor_context(
        instance=instance, sensor_name="canary_bake", definitions=defs, resources=local(root), cursor=cursor
    ) as context:
        return defs.resolve_sensor_def("canary_bake").evaluate_tick(context)


def _conclude(defs, instance, request) -> dg.ExecuteInProcessResult:
    """The sensor's request run as the daemon launches it: its config and its tags."""
    config = request.run_config["ops"]["conclude"]["config"]
    result = run_job(defs, instance, "conclude_rollout", config, tags=request.tags)
    assert result.success, result.all_events
    return result


@pytest.mark.parametrize("how", ["deleted", "unreadable", "champion"])
def test_a_rollout_ended_outside_conclude_rollout_is_recorded(root, how):
    """rollout.json deleted or unreadable, or the challenger made champion by another path: the challenger alias
    does not stay behind, the end is in the alias history and on `deployment`, and the file says `off` why."""
    defs = definitions(local(root))
    registry, store = local(root)["registry"], local(root)["storage"].root
    name, file = registry.model_name, Path(store) / "serving" / "rollout.json"
    with dg.instance_for_test() as instance:
        assert run_job(defs, instance, "start_canary", {"version": 2, "reason": "try seed 2"}).success
        first = tick_with(defs, instance, root, None)
        assert "too few requests" in first.skip_message and first.cursor

        if how == "deleted":
            file.unlink()
        elif how == "unreadable":
            file.write_text('{"mode": "canary", "challenger_version": ', encoding="utf-8")
        else:  # approved by a hand that left the challenger alias (a rollback job cannot: see below)
            registry.move_alias(name, CHAMPION, 2, 1, reason="made champion by hand", actor="tests")
        ended = tick_with(defs, instance, root, first.cursor)
        [request] = ended.run_requests
        assert request.tags["keel/rollout_outcome"] == "ended" and not ended.cursor
        state = read_state(store)
        words = {"deleted": "was deleted", "unreadable": "cannot be read", "champion": "is the registry's champion"}
        assert state.mode == "off" and words[how] in state.reason, state.reason
        if how == "unreadable":
            assert list(file.parent.glob("rollout.json.unreadable-*"))  # kept for a look

        _conclude(defs, instance, request)
        assert registry.alias_version(name, CHALLENGER) is None
        last = registry.alias_history(name, CHALLENGER)[-1]
        assert (last.kind, last.from_version, last.to_version) == ("rollback", 2, None) and words[how] in last.reason
        recorded = deployments(instance)[-1]
        assert recorded["mode"] == "off" and words[how] in recorded["reason"]
        key = "ended_version" if how == "champion" else "rolled_back_version"
        assert recorded[key] == 2
        assert read_state(store).mode == "off"
        assert tick_with(defs, instance, root, ended.cursor).skip_message.startswith("no canary")


def test_a_rollback_judgement_that_meets_a_promotion_of_the_same_version_fails_naming_the_move(root):
    """The bake judged the canary for rollback while a person promoted it: the rollback waited for the alias-move
    slot and found it champion. Before, the run succeeded at INFO and the version judged bad served everything."""
    defs = definitions(local(root))
    registry = local(root)["registry"]
    name = registry.model_name
    with dg.instance_for_test() as instance:
        assert run_job(defs, instance, "start_canary", {"version": 2, "reason": "try seed 2"}).success
        registry.move_alias(name, CHAMPION, 2, 1, reason="looks fine to me", actor="ana", kind="approve")
        judged = {"outcome": "rollback", "version": 2, "reason": "p99 latency 3x the champion's"}
        result = run_job(defs, instance, "conclude_rollout", judged, tags={"keel/rollout_outcome": "rollback"})
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
        assert "v2, judged for rollback (p99 latency 3x the champion's), became the champion" in failure.description
        assert "approve by ana" in failure.description and "run `rollback`" in failure.description
        assert registry.alias_version(name, CHALLENGER) is None and deployments(instance)[-1]["ended_version"] == 2
        state = read_state(local(root)["storage"].root)  # before, "rolled back: …" while v2 served every request
        assert state.mode == "off" and state.reason.startswith("ended: v2 became the champion by another move")


def test_a_rollback_onto_the_version_under_canary_is_refused(root):
    defs = definitions(local(root))
    registry = local(root)["registry"]
    name = registry.model_name
    registry.move_alias(name, CHAMPION, 2, 1, reason="v2 serves", actor="tests")
    with dg.instance_for_test() as instance:
        assert run_job(defs, instance, "start_canary", {"version": 1, "reason": "try v1 again"}).success
        rollback = defs.resolve_job_def("rollback").execute_in_process(
            run_config={"ops": {"rollback_champion": {"config": {"reason": "v2 is bad"}}}},
            instance=instance,
            raise_on_error=False,
        )
        assert not rollback.success
        assert "v1 is under canary since" in str(rollback.all_events) and "End the rollout first" in str(
            rollback.all_events
        )
        assert registry.champion() == 2 and registry.alias_version(name, CHALLENGER) == 1


def test_start_canary_repairs_the_published_copy_the_endpoint_will_load(root):
    from assets.batch_predictions import published_model
    from ml.artifact import verify_artifact

    defs = definitions(local(root))
    resources = local(root)
    registry, storage = resources["registry"], resources["storage"]
    published = Path(published_model(storage, registry, 2))
    model_file = next(p for p in published.iterdir() if p.name.startswith("model"))
    model_file.write_bytes(model_file.read_bytes()[:-10])  # a truncated copy, as a failed upload leaves
    with dg.instance_for_test() as instance:
        assert run_job(defs, instance, "start_canary", {"version": 2, "reason": "try seed 2"}).success
    sha = registry.version_info(registry.model_name, 2)["tags"]["manifest_sha256"]
    verify_artifact(published, sha)  # the endpoint loads a verified copy
    assert list(published.parent.glob(f".{published.name}.corrupt-*"))


def test_nothing_is_judged_while_a_job_moves_an_alias(root):
    import uuid

    defs = definitions(local(root))
    registry, store = local(root)["registry"], local(root)["storage"].root
    with dg.instance_for_test() as instance:
        assert run_job(defs, instance, "start_canary", {"version": 2, "reason": "try seed 2"}).success
        first = tick_with(defs, instance, root, None)
        # conclude_rollout promoting v2, between its champion move and its rollout.json write:
        registry.move_alias(registry.model_name, CHAMPION, 2, 1, reason="promoted", actor="tests")
        running = dg.DagsterRun(
            job_name="conclude_rollout", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
        )
        instance.add_run(running)
        waiting = tick_with(defs, instance, root, first.cursor)
        assert f"conclude_rollout run {running.run_id} is under way" in waiting.skip_message
        assert read_state(store).mode == "canary" and not waiting.run_requests
        instance.report_run_failed(running)  # it died: the registry's truth is acted on after all
        assert tick_with(defs, instance, root, first.cursor).run_requests


def test_an_approve_requested_before_its_version_was_rolled_back_moves_nothing(root):
    """An approve of v2 asked for during v2's canary must not promote it after the bake rolled v2 back in the
    meantime (the approve waited for the alias slot the rollback held): a version just judged bad."""
    import threading
    import time
    import uuid

    from resources.registry import ALIAS_POOL

    defs = definitions(local(root))
    registry = local(root)["registry"]
    name = registry.model_name
    registry.move_alias(name, CHALLENGER, 2, None, reason="canary of v2", actor="tests")
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(ALIAS_POOL)
        concluding = dg.DagsterRun(
            job_name="conclude_rollout", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
        )
        instance.add_run(concluding)
        assert storage.claim_concurrency_slot(ALIAS_POOL, concluding.run_id, "conclude").is_claimed

        def roll_back_v2_once_the_approve_waits() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until the approve waits for the slot the rollback holds
                runs = instance.get_runs(dg.RunsFilter(job_name="approve"))
                logged = instance.all_logs(runs[0].run_id) if runs else []
                if any("waiting for the" in (entry.user_message or "") for entry in logged):
                    break
                time.sleep(0.1)
            registry.retire_alias(name, CHALLENGER, 2, "p99 over the ceiling", "canary_bake", kind="rollback")
            instance.report_run_failed(concluding)
            storage.free_concurrency_slots_for_run(concluding.run_id)

        concluder = threading.Thread(target=roll_back_v2_once_the_approve_waits)
        concluder.start()
        approve = defs.resolve_job_def("approve").execute_in_process(
            run_config={"ops": {"approve_challenger": {"config": {"reason": "ship it", "version": 2}}}},
            instance=instance,
            raise_on_error=False,
        )
        concluder.join(timeout=120)
        assert not approve.success
        assert "rolled back since this approve was requested" in str(approve.all_events)
        assert registry.champion() == 1  # v2 was not promoted
        # Asked for after the rollback, the same approve goes through: a person's explicit call.
        again = defs.resolve_job_def("approve").execute_in_process(
            run_config={"ops": {"approve_challenger": {"config": {"reason": "ship it anyway", "version": 2}}}},
            instance=instance,
            raise_on_error=False,
        )
        assert again.success and registry.champion() == 2


def test_a_rollback_requested_before_another_move_of_the_champion_moves_nothing(root):
    """A rollback asked for while champion was v2 must not undo an approve of v1 that ran first (it would bring
    back the v2 it was asked to remove): the champion moved after the request, so nothing moves."""
    import threading
    import time
    import uuid

    from resources.registry import ALIAS_POOL

    defs = definitions(local(root))
    registry = local(root)["registry"]
    name = registry.model_name
    registry.move_alias(name, CHAMPION, 2, 1, reason="v2 approved", actor="tests")
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(ALIAS_POOL)
        approving = dg.DagsterRun(job_name="approve", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
        instance.add_run(approving)
        assert storage.claim_concurrency_slot(ALIAS_POOL, approving.run_id, "approve_challenger").is_claimed

        def approve_v1_once_the_rollback_waits() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until the rollback waits for the slot the approve holds
                runs = instance.get_runs(dg.RunsFilter(job_name="rollback"))
                logged = instance.all_logs(runs[0].run_id) if runs else []
                if any("waiting for the" in (entry.user_message or "") for entry in logged):
                    break
                time.sleep(0.1)
            registry.move_alias(name, CHAMPION, 1, 2, reason="v1 approved again", actor="tests")
            instance.report_run_failed(approving)
            storage.free_concurrency_slots_for_run(approving.run_id)

        approver = threading.Thread(target=approve_v1_once_the_rollback_waits)
        approver.start()
        rollback = defs.resolve_job_def("rollback").execute_in_process(
            run_config={"ops": {"rollback_champion": {"config": {"reason": "v2 is bad"}}}},
            instance=instance,
            raise_on_error=False,
        )
        approver.join(timeout=120)
        assert not rollback.success
        assert "moved since this rollback was requested" in str(rollback.all_events)
        assert registry.champion() == 1  # not back to v2


def test_a_since_from_a_clock_reset_to_year_one_and_a_labels_fifo_still_give_a_decision_within_a_tick(
    root, artifacts, training_inputs
):
    """A `since` written by a machine whose clock read year 1 meant a look-up for each of 740,000 days (the
    tick ran for hours), and a FIFO under a labels file's name blocked the tick for good."""
    defs = definitions(local(root))
    params, store = local(root)["params"].load(), local(root)["storage"].root
    today = dt.datetime.now(dt.UTC).date().isoformat()
    with dg.instance_for_test() as instance:
        assert run_job(defs, instance, "start_canary", {"version": 3, "reason": "try seed 3"}).success
        serve(root, training_inputs["holdout"], artifacts, canary=3, canary_latency=4.0)
        state = state_uri(store)
        document = json.loads(Path(state).read_text())
        Path(state).write_text(json.dumps({**document, "since": "0001-01-01T00:00:00+00:00"}))
        labels = Path(params.labels_uri(today))
        labels.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(labels)

        outcome: list = []
        ticking = threading.Thread(target=lambda: outcome.append(tick(defs, instance, root)), daemon=True)
        ticking.start()
        ticking.join(timeout=120)
        assert outcome, "the tick did not return within 120 s"
        [request] = outcome[0].run_requests
        assert request.run_config["ops"]["conclude"]["config"]["outcome"] == "promote"


@pytest.mark.parametrize(
    "churn, ids, named",
    [
        (["Yes ", "No ", "No "], ["C1", "C2", "C3"], "has values ['No ', 'Yes ']"),
        (["yes", "no", "no"], ["C1", "C2", "C3"], "has values ['no', 'yes']"),
        ([None, "No", "Yes"], ["C1", "C2", "C3"], "has values ['1 missing']"),
        (["Yes", "No", "No"], ["C1", "C2", "C1"], "1 repeated id(s), e.g. 'C1'"),
    ],
)
def test_a_labels_file_the_labels_job_would_refuse_is_named_not_read_as_truth_by_the_bake(
    tmp_path: Path, churn, ids, named
):
    """Blank, padded or lower-case labels, or an id labelled twice: the labels job refuses such a file, and
    the bake must not judge AUC with it (before, a blank or 'Yes ' was read as a negative and the last of
    two labels of an id won, without a word)."""
    from orchestration.rollout_sensor import arrived_labels

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    settings = local(tmp_path)["params"].load()
    path = Path(settings.labels_uri("2026-12-07"))
    path.parent.mkdir(parents=True)
    pd.DataFrame({"customer_id": ids, "churn": churn}).to_parquet(path)
    ignored: list[str] = []
    assert arrived_labels(settings, ["2026-12-07"], ignored) is None
    [problem] = ignored
    assert problem.startswith(f"{path}: ") and named in problem, problem


@pytest.mark.parametrize("fails", ["champion_copy", "rollout_file"])
def test_a_start_canary_that_cannot_write_leaves_no_challenger_alias_behind(root, monkeypatch, fails):
    """The published-model folder or the rollout file's folder read-only (EROFS): start_canary fails naming
    the path, and the challenger alias is where it was; before, it stayed on the new version with
    rollout.json `off` (the job failed after the move, when publishing the champion's copy)."""
    import orchestration.rollout as rollout

    defs = definitions(local(root))
    registry, store = local(root)["registry"], local(root)["storage"].root
    name = registry.model_name
    denied = OSError(30, "Read-only file system", f"{store}/models/registered/x.tmp")
    if fails == "champion_copy":
        real = rollout.served

        def served(storage, registry_, version):
            if version == 1:
                raise denied
            return real(storage, registry_, version)

        monkeypatch.setattr(rollout, "served", served)
    else:

        def write_state(*args, **kwargs):
            raise denied

        monkeypatch.setattr(rollout, "write_state", write_state)
    with dg.instance_for_test() as instance:
        result = run_job(defs, instance, "start_canary", {"version": 3, "reason": "try seed 3"})
        assert not result.success
    assert registry.alias_version(name, CHALLENGER) is None and registry.champion() == 1
    assert read_state(store).mode == "off"
    assert "no canary of v3" in str(result.all_events) and "Read-only file system" in str(result.all_events)


@pytest.mark.parametrize("job", ["approve", "rollback"])
def test_a_move_whose_record_fails_afterwards_says_the_alias_moved(root, monkeypatch, job):
    """The tracking server gone right after the champion moved (its history written), while the job writes the
    cards: the failure says the move stands. Before, it was MLflow's bare error, as if nothing had moved."""
    from mlflow.exceptions import MlflowException

    import orchestration.promotion as promotion

    registry = local(root)["registry"]
    name = registry.model_name
    if job == "rollback":
        registry.move_alias(name, CHAMPION, 2, 1, reason="v2 better", actor="tests", kind="approve")

    def card(*args, **kwargs):
        raise MlflowException("API request to http://mlflow:5000/api/2.0/mlflow/… failed: Connection refused")

    monkeypatch.setattr(promotion, "refresh_card", card)
    defs = definitions(local(root))
    config = {"reason": "try", "version": 2} if job == "approve" else {"reason": "v2 bad"}
    op = "approve_challenger" if job == "approve" else "rollback_champion"
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(job).execute_in_process(
            run_config={"ops": {op: {"config": config}}}, instance=instance, raise_on_error=False
        )
    assert not result.success
    moved = "v1 -> v2" if job == "approve" else "v2 -> v1"
    assert registry.alias_version(name, CHAMPION) == (2 if job == "approve" else 1)
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert f"champion moved {moved}" in failure.message, failure.message
    assert "the move stands" in failure.message and "Connection refused" in failure.message
