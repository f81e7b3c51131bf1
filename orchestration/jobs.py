"""Jobs users launch from the UI or the CLI (`dagster job execute -m orchestration.definitions -j NAME`)."""

import dagster as dg

from assets.candidate_model import candidate_model
from assets.raw_data import raw_data
from assets.registered_model import registered_model
from assets.training_set import training_set
from orchestration.promotion import approve, rollback

prepare_data = dg.define_asset_job(
    "prepare_data",
    selection=dg.AssetSelection.assets(raw_data, training_set),  # their checks come along
    description="Import and version the raw data (DVC), run its blocking data checks, build the training set.",
)

train_model = dg.define_asset_job(
    "train_model",
    selection=dg.AssetSelection.assets(raw_data, training_set, candidate_model, registered_model),
    description=(
        "The training lifecycle: raw data (DVC) and its data checks, the training set, a candidate "
        "model, the evaluation gate, and registration in MLflow (champion or challenger)."
    ),
)

JOBS = [prepare_data, train_model, approve, rollback]
