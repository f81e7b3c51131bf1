"""params.yaml as one model: each section's defaults in one place, and errors that name the key."""

from __future__ import annotations

import copy
import datetime

import pytest
import yaml

from ml.params import DailySection, Params, ParamsError, load_params, parse_params
from tests.conftest import REPO

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())
REQUIRED = {"dataset"}  # nothing can be guessed about the user's data


def test_the_shipped_file_loads_with_every_section_as_written():
    params = load_params(REPO / "params.yaml")
    assert set(Params.model_fields) == set(SHIPPED)  # every section of the file is in the model, and no other
    for section, written in SHIPPED.items():
        if section != "dataset":
            dumped = getattr(params, section).model_dump(mode="json")
            assert {k: dumped[k] for k in written} == yaml.safe_load(yaml.safe_dump(written)), section
    assert params.root == REPO and params.incoming_uri("2026-10-02") == str(REPO / "data/incoming/2026-10-02.parquet")
    assert params.model_name == SHIPPED["dataset"]["name"]  # registry.model_name null: the dataset's name


@pytest.mark.parametrize("section", sorted(SHIPPED))
def test_each_section_removed_in_turn_takes_its_one_set_of_defaults(section):
    document = {k: v for k, v in SHIPPED.items() if k != section}
    if section in REQUIRED:
        with pytest.raises(ParamsError, match=rf"params.yaml: {section}: Field required"):
            parse_params(document)
        return
    if section == "daily":  # the partitions need a first day; every other daily key has a default
        with pytest.raises(ParamsError, match=r"params.yaml: daily: Field required"):
            parse_params(document)
        document["daily"] = {"start_date": SHIPPED["daily"]["start_date"]}
    params = parse_params(document)
    model = type(getattr(params, section))
    defaults = model() if section != "daily" else model(start_date=SHIPPED["daily"]["start_date"])
    assert getattr(params, section) == defaults
    # One default per key: each is declared on the model's field, so every reader sees the same value.
    for name, field in model.model_fields.items():
        if not (section == "daily" and name == "start_date"):
            assert not field.is_required(), f"{section}.{name} has no default"


def test_the_retraining_window_has_one_default_for_the_sensor_and_the_training_set():
    from assets.training_set import TrainingSetConfig, recent_days
    from orchestration.retrain_policy import Episode, State, decide

    params = parse_params({k: v for k, v in SHIPPED.items() if k != "retraining"})
    labelled = [f"2026-{m:02d}-{d:02d}" for m in (7, 8, 9, 10) for d in range(1, 29)]
    state = State(latest_day=labelled[-1], episode=Episode("performance", labelled[0], "a decay on the first day"))
    asked = decide(state, labelled, params.retraining).retrain
    by_hand = recent_days(labelled, TrainingSetConfig(), params.retraining.window_days)
    asked_days = [d for d in labelled if asked["recent_from"] <= d <= asked["recent_to"]]
    assert len(asked_days) == len(by_hand) == params.retraining.window_days == 90


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["gate"].update(min_aUC=0.7), r"gate.min_aUC: unknown key"),
        (lambda p: p["drift"].update(drift_share=1.5), r"drift.drift_share: Input should be less than or equal to 1"),
        (lambda p: p["training"].update(holdout=0.2), r"training.holdout: unknown key"),
        (lambda p: p["training"].update(model="xgboost"), r"training.model: 'xgboost' is not one of lightgbm"),
        (lambda p: p["registry"].update(promotion="sometimes"), r"registry.promotion: Input should be 'auto' or"),
        (lambda p: p["retraining"].update(window_days=0), r"retraining.window_days: Input should be greater than"),
        (lambda p: p.update(scoring=[1]), r"scoring: Input should be a valid dictionary"),
        (lambda p: p.update(extras={}), r"extras: unknown key"),
    ],
)
def test_a_bad_key_or_value_is_named_by_its_dotted_path(change, message):
    document = copy.deepcopy(SHIPPED)
    change(document)
    with pytest.raises(ParamsError, match=message):
        parse_params(document)


def test_a_broken_file_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("gate: [\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(ParamsError, match=r"nowhere.yaml: no such file"):
        load_params(tmp_path / "nowhere.yaml")


@pytest.mark.parametrize(
    "template",
    [
        "data/incoming/\x00{date}.parquet",
        "data/incoming/{date}\n.parquet",
        "data/incoming/*{date}.parquet",
        "data/{date}/{date}.parquet",
        "data/incoming/{date}.parquet\x7f",
        "data/{{date}}.parquet",
        "data/in{coming/{date}.parquet",
        "data/incoming/{date}}.parquet",
        "data/{region}/{date}.parquet",
        "data/incoming/\u200b{date}.parquet",
        "data/incoming/{date}.parquet\x85",
        "data/incoming/{date}\u2028.parquet",
    ],
)
def test_a_day_file_template_with_a_control_character_a_wildcard_or_two_dates_is_refused_naming_it(template):
    """Such a template listed no file (or raised) on every tick: the day's files waited unscored, the skip
    reason said only "no snapshot files found"."""
    with pytest.raises(ValueError, match="daily.incoming|incoming") as refused:
        DailySection(incoming=template)
    assert repr(template) in str(refused.value)


@pytest.mark.parametrize("template", ["data/My Drive/{date}/snapshot.parquet", "gs://bucket/in/{date}.parquet"])
def test_a_day_file_template_with_spaces_folders_or_a_bucket_is_accepted(template):
    assert (
        DailySection(start_date=datetime.date(2026, 10, 1), incoming=template)
        .incoming_uri("2026-10-02")
        .endswith(template.replace("{date}", "2026-10-02").removeprefix("data/"))
    )
