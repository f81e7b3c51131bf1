"""The container contract (ml/runtime.py) and the Pipes transport switch (ml/pipes.py)."""

import json

import pytest

from ml import pipes, runtime

ARGUMENTS = {
    "features": "s3://b/keel/training_set/features.parquet",
    "model": "s3://b/keel/models/candidates/r1",
    "out": "s3://b/keel/models/candidates/r2",
    "verbose": "yes",
}


def sagemaker_root(tmp_path):
    root = tmp_path / "opt" / "ml"
    (root / "input" / "data" / "features").mkdir(parents=True)
    (root / "input" / "data" / "features" / "features.parquet").write_bytes(b"x")
    (root / "input" / "data" / "features" / "features.parquet.bak").write_bytes(b"y")  # a prefix sibling
    (root / "input" / "data" / "model" / "plots").mkdir(parents=True)  # a folder input's contents
    (root / "input" / "data" / "model" / "manifest.json").write_text("{}")
    (root / "input" / "config").mkdir(parents=True)
    return root


def test_off_any_platform_the_arguments_are_used_as_given():
    assert runtime.resolve(ARGUMENTS, ["features", "model"], ["out"], environ={}) == ARGUMENTS


def test_on_sagemaker_inputs_come_from_their_channels_and_outputs_go_to_the_model_dir(tmp_path):
    root = sagemaker_root(tmp_path)
    env = {"SM_TRAINING_ENV": "{}", "KEEL_SAGEMAKER_ROOT": str(root)}
    resolved = runtime.resolve(ARGUMENTS, ["features", "model"], ["out"], environ=env)
    assert resolved == {
        "features": str(root / "input" / "data" / "features" / "features.parquet"),  # a file input: the file
        "model": str(root / "input" / "data" / "model"),  # a folder input: the channel folder
        "out": str(root / "model" / "out"),
        "verbose": "yes",  # neither input nor output: unchanged
    }


def test_sagemaker_channel_and_model_dir_variables_win(tmp_path):
    root = sagemaker_root(tmp_path)
    env = {
        "SM_CHANNEL_FEATURES": str(root / "input" / "data" / "features"),
        "SM_CHANNEL_MODEL": str(root / "input" / "data" / "model"),
        "SM_MODEL_DIR": str(tmp_path / "elsewhere"),
        "KEEL_SAGEMAKER_ROOT": str(root),
    }
    resolved = runtime.resolve(ARGUMENTS, ["features", "model"], ["out"], environ=env)
    assert resolved["out"] == str(tmp_path / "elsewhere" / "out")
    assert resolved["features"].endswith("features/features.parquet")


def test_sagemaker_hyperparameters_override_arguments_they_name(tmp_path):
    root = sagemaker_root(tmp_path)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"verbose": "no", "unrelated": 3}))
    env = {"SM_TRAINING_ENV": "{}", "KEEL_SAGEMAKER_ROOT": str(root)}
    resolved = runtime.resolve(ARGUMENTS, ["features", "model"], ["out"], environ=env)
    assert resolved["verbose"] == "no" and "unrelated" not in resolved


def test_a_missing_channel_is_named(tmp_path):
    root = sagemaker_root(tmp_path)
    env = {"SM_TRAINING_ENV": "{}", "KEEL_SAGEMAKER_ROOT": str(root)}
    with pytest.raises(FileNotFoundError, match=r"input 'state': SageMaker channel folder .*/input/data/state"):
        runtime.resolve({**ARGUMENTS, "state": "s3://b/s.json"}, ["state"], [], environ=env)


def test_asking_for_an_argument_that_was_not_passed_is_an_error():
    with pytest.raises(ValueError, match=r"\['rows'\] that were not passed"):
        runtime.resolve(ARGUMENTS, ["rows"], [], environ={})


def test_the_pipes_transport_is_picked_by_its_variable(monkeypatch):
    monkeypatch.delenv(pipes.TRANSPORT_VARIABLE, raising=False)
    assert pipes.transport() == (None, None)  # Dagster's defaults, as for a local subprocess
    monkeypatch.setenv(pipes.TRANSPORT_VARIABLE, "s3")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    loader, writer = pipes.transport()
    assert type(loader).__name__ == "PipesS3ContextLoader" and type(writer).__name__ == "PipesS3MessageWriter"
    monkeypatch.setenv(pipes.TRANSPORT_VARIABLE, "carrier-pigeon")
    with pytest.raises(ValueError, match=r"KEEL_PIPES_TRANSPORT='carrier-pigeon' is not a known Pipes transport"):
        pipes.transport()
