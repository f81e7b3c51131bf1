"""The project's nights on a real stream, through its Dagster jobs and sensors (run inside a project copy).

    python -m benchmarks.replay --nights N --label-delay D --out nights.jsonl    (cwd = the project copy)

It must run with the copy as its working directory and first on sys.path: the daily partitions are
fixed from the copy's params.yaml `daily.start_date` when `assets.partitions` is imported. Night n
writes day n's snapshot (no target) and the labels of day n - D from the stream file
(benchmarks/retraining.py writes it), runs `nightly_scoring` for the day, ticks `labels_arrived` and
`retrain_on_drift` as the daemon would (demo/story.py's `launch`; cursors kept) and runs what they
ask for. One JSON line per night is appended to --out as soon as the night ends, so a crash keeps
the nights before it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from sklearn.metrics import roc_auc_score

STREAM = Path("var") / "benchmark" / "stream.parquet"  # the days after the raw data, with their targets
DAY_COLUMN = "day"
GATE_CHECK = "evaluation_gate"


def tick(defs: dg.Definitions, name: str, instance, resources: dict, cursors: dict) -> tuple[list, str]:
    """One sensor evaluation as the daemon makes it (cursor kept): its run requests and its skip reason."""
    with dg.build_sensor_context(
        instance=instance, cursor=cursors.get(name), resources=resources, sensor_name=name, definitions=defs
    ) as context:
        data = defs.resolve_sensor_def(name).evaluate_tick(context)
    cursors[name] = data.cursor
    return list(data.run_requests or []), data.skip_message or ""


def failed_steps(result) -> list[str]:
    """What failed in a run, in a line each: the step and the error's message."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # Dagster wraps the asset's own error
                error = error.cause
            lines.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}"[:500])
    return lines or ["the run failed"]


def gate_of(result) -> tuple[bool | None, str]:
    """The evaluation gate's verdict in a training run (None when it did not run) and its reason."""
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name == GATE_CHECK:
            reason = evaluation.metadata.get("reason")
            return evaluation.passed, str(reason.value) if reason else ""
    return None, ""


def day_auc(storage, spec, day: str, truth: pd.DataFrame) -> float | None:
    """ROC AUC of the day's stored predictions against the day's true labels."""
    import ml.io
    from ml.predictions import MANIFEST, read_predictions
    from resources import layout

    uri = layout.predictions(storage, day)
    if not ml.io.exists(f"{uri}/{MANIFEST}"):
        return None
    scored = read_predictions(uri).merge(truth, on=spec.id.column, how="inner", validate="one_to_one")
    return float(roc_auc_score(scored[spec.target.column] == spec.target.positive, scored["score"]))


def materialized(result, node: str) -> dict:
    """The metadata values of what a run materialized for `node`; {} when it did not."""
    found = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in found[-1].metadata.items()} if found else {}


def run_retrain(defs, instance, request, night: dict) -> None:
    """Run what the retraining sensor asked for; note whether the gate blocked it or it promoted a version."""
    from assets.labels import labels
    from assets.registered_model import registered_model
    from demo.story import launch
    from orchestration.history import latest_metadata

    before = latest_metadata(instance, registered_model.key).get("champion_version")
    labelled = sorted(instance.get_materialized_partitions(labels.key))  # what the sensor saw
    result = launch(defs, "retrain", instance, request, sensor="retrain_on_drift")
    passed, reason = gate_of(result)
    registered = latest_metadata(instance, registered_model.key)
    promoted = bool(result.success and registered.get("registered") and registered.get("champion_version") != before)
    candidate, training = materialized(result, "candidate_model"), materialized(result, "training_set")
    entry = {
        "run_key": request.run_key,
        "tags": dict(request.tags),
        "labelled_days": labelled,
        "window": candidate.get("window"),
        "window_reason": candidate.get("window_reason"),
        "raw_days": training.get("raw_days"),  # the raw data's days that are days of the windows
        "gate_passed": passed,
        "gate_reason": reason,
        "promoted": promoted,
        "version": registered.get("version") if promoted else None,
    }
    if not result.success and passed is not False:  # a gate that says no is a blocked retrain, not a failure
        night["failures"] += [f"retrain {request.run_key}: {line}" for line in failed_steps(result)]
    night["retrains"].append(entry)


def train_first_champion(defs, instance) -> dict:
    from assets.registered_model import registered_model
    from demo.story import launch
    from orchestration.history import latest_metadata

    started = time.monotonic()
    result = launch(defs, "train_model", instance)
    passed, reason = gate_of(result)
    if not result.success:
        raise SystemExit(
            "the first champion was not trained: "
            + ("; ".join(failed_steps(result)) if passed is not False else f"the evaluation gate said: {reason}")
        )
    registered = latest_metadata(instance, registered_model.key)
    return {
        "version": registered["version"],
        "holdout_auc": registered["roc_auc"],
        "gate_reason": reason,
        "seconds": time.monotonic() - started,
    }


def replay(root: Path, nights: int, label_delay: int, out: Path) -> None:
    import ml.io
    from assets.batch_predictions import batch_predictions
    from assets.drift_report import drift_report
    from demo.story import launch
    from ml.params import load_params
    from orchestration.definitions import definitions
    from orchestration.deployments import local
    from orchestration.history import latest_metadata

    params = load_params(root / "params.yaml")
    spec, daily = params.dataset, params.daily
    stream = pd.read_parquet(root / STREAM)
    by_day = dict(tuple(stream.groupby(DAY_COLUMN)))
    resources = local(root)
    defs = definitions(resources)
    with dg.DagsterInstance.from_config(str(root / "var" / "dagster")) as instance:
        first = train_first_champion(defs, instance)
        _append(out, {"setup": first})
        print(f"first champion v{first['version']}: holdout ROC AUC {first['holdout_auc']:.4f}", file=sys.stderr)
        cursors: dict = {}
        for number in range(1, nights + 1):
            started = time.monotonic()
            day = str(daily.date(number))
            rows = by_day[day]
            night = {"night": number, "day": day, "rows": len(rows), "failures": [], "retrains": []}
            ml.io.write_parquet(rows[spec.expected_columns(include_target=False)], params.incoming_uri(day))
            if number > label_delay:
                arrived = str(daily.date(number - label_delay))
                ml.io.write_parquet(by_day[arrived][[spec.id.column, spec.target.column]], params.labels_uri(arrived))
                night["labels_of"] = arrived
            scoring = launch(defs, "nightly_scoring", instance, partition_key=day)
            if not scoring.success:
                night["failures"] += [f"nightly_scoring: {line}" for line in failed_steps(scoring)]
            scored = latest_metadata(instance, batch_predictions.key, day)
            drift = latest_metadata(instance, drift_report.key, day)
            night |= {
                "version": scored.get("model_version"),
                "verdict": drift.get("verdict"),
                "drift_share": drift.get("drift_share"),
                "drifted": list(drift.get("drifted_columns", [])),
                "auc": day_auc(resources["storage"], spec, day, rows[[spec.id.column, spec.target.column]]),
            }
            for request in tick(defs, "labels_arrived", instance, resources, cursors)[0]:
                feedback = launch(defs, "label_feedback", instance, request, sensor="labels_arrived")
                if not feedback.success:
                    night["failures"] += [
                        f"label_feedback {request.partition_key}: {x}" for x in failed_steps(feedback)
                    ]
            requests, night["skip_reason"] = tick(defs, "retrain_on_drift", instance, resources, cursors)
            for request in requests:
                run_retrain(defs, instance, request, night)
            night["seconds"] = round(time.monotonic() - started, 2)
            _append(out, night)
            print(_progress(night), file=sys.stderr, flush=True)


def _progress(night: dict) -> str:
    retrain = ", ".join(
        f"{r['run_key']} -> "
        + (f"v{r['version']}" if r["promoted"] else "blocked" if r["gate_passed"] is False else "-")
        for r in night["retrains"]
    )
    auc = f"{night['auc']:.3f}" if night["auc"] is not None else "-"
    failed = f" FAILED: {night['failures'][0]}" if night["failures"] else ""
    return (
        f"night {night['night']:3d} {night['day']} v{night['version']} {night['verdict']} auc {auc}"
        f" retrain: {retrain or 'none'} ({night['seconds']:.0f}s){failed}"
    )


def _append(out: Path, record: dict) -> None:
    with out.open("a", encoding="utf-8") as file:
        file.write(json.dumps(record, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, required=True)
    parser.add_argument("--label-delay", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines: the setup, then one line per night")
    args = parser.parse_args(argv)
    replay(Path.cwd(), args.nights, args.label_delay, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
