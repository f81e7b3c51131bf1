"""A short story end to end, in a project copy with its own Dagster home and MLflow store: daily files
arrive, the nightly job scores them, the sensors tick, and a drift leads to exactly one retrain."""

from pathlib import Path

import dagster as dg
import yaml

from tests.conftest import clear_daily_files, set_params

STORY = {
    "simulation": {"days": 10, "rows_per_day": 1000, "label_delay_days": 1},
    "retraining": {"min_labelled_days": 3, "window_days": 7, "cooldown_days": 7},
}


def tell(project: Path, scenario: dict):
    from demo.story import run_nights
    from orchestration.definitions import definitions
    from orchestration.deployments import local
    from orchestration.history import latest_metadata

    set_params(project, **STORY)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["simulation"]["scenario"] = scenario  # replaced, not merged: each scenario has its own keys
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    clear_daily_files(project)
    resources = local(project)
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as instance:
        nights = run_nights(project, definitions(resources), instance, resources)
        return nights, instance, resources, latest_metadata


def test_drift_from_day_5_retrains_once_and_later_days_use_the_new_champion(trained_project: Path):
    from assets.model_performance import model_performance
    from assets.registered_model import registered_model

    scenario = {
        "name": "price_rise",
        "from_day": 5,
        "column": "monthly_charges",
        "factor": 1.25,
        "churn_above_quantile": 0.5,
        "churn_extra_rate": 0.35,
    }
    nights, instance, resources, latest = tell(trained_project, scenario)

    assert all(n.success for n in nights), [(n.day, n.verdict) for n in nights]
    assert [n.verdict for n in nights[:4]] == ["no drift"] * 4
    assert all(n.verdict == "drift" for n in nights[4:7]), [(n.day, n.verdict, n.drifted) for n in nights]
    assert "monthly_charges" in nights[4].drifted

    requests = [r for n in nights for r in n.retrain_requests]
    assert len(requests) == 1, [n.events for n in nights]  # one episode, one retrain (cooldown afterwards)
    assert requests[0].run_key == "retrain-drift-2026-10-05"
    retrained_on = [n.day for n in nights if n.retrain_requests][0]
    # Labels arrive one day late and three labelled drifted days are needed: night 8 asks.
    assert retrained_on == "2026-10-08"
    # The latest window_days (7) labelled days: the days before the rise and the three after it.
    assert requests[0].run_config["ops"]["training_set"]["config"] == {
        "recent_from": "2026-10-01",
        "recent_to": "2026-10-07",
        "reference_from": "2026-10-05",  # v2's drift reference: the shifted days
        "requested_on": "2026-10-08",
        "relation_changed": False,
    }

    registered = latest(instance, registered_model.key)
    assert registered["version"] == 2 and registered["champion_version"] == 2
    assert registered["training_partitions"].count("2026-10-0") == 7  # days 1..7 with their md5s
    assert [n.version for n in nights] == [1] * 8 + [2] * 2
    # The new champion was trained on the shift: its own reference no longer calls those days drift.
    assert [n.verdict for n in nights[8:]] == ["no drift"] * 2

    v1_auc = [latest(instance, model_performance.key, n.day).get("roc_auc") for n in nights]
    assert min(v1_auc[:4]) > max(v1_auc[4:8])  # the shift costs the old model AUC
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "retrain_on_drift"}))
    assert len(runs) == 1 and runs[0].tags["dagster/run_key"] == "retrain-drift-2026-10-05"
    assert runs[0].tags[".dagster/repository"] == "__repository__@keel"  # so the sensor's page lists it
