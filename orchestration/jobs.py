"""Jobs users launch from the UI or the CLI (`dagster job execute -m orchestration.definitions -j NAME`)."""

import dagster as dg

from assets.batch_predictions import batch_predictions
from assets.candidate_model import candidate_model
from assets.drift_report import drift_report
from assets.features import features
from assets.incoming_data import incoming_data
from assets.labels import labels
from assets.model_performance import model_performance
from assets.partitions import DAILY
from assets.raw_data import raw_data
from assets.registered_model import registered_model
from assets.training_set import training_set
from orchestration.promotion import approve, rollback

# The daemon launches a failed daily run again (run_retries in dagster.yaml), at most this often.
DAILY_RETRIES = {"dagster/max_retries": "2"}
# A training run is launched again only when its process died (killed, the machine restarted), from the step
# that did not finish: a registration killed after its alias moved then records the move, its card and its
# alert. A run that failed in a step (a blocked gate, a training error) would fail again: it is not retried.
TRAINING_RETRIES = {"dagster/max_retries": "1", "dagster/retry_on_asset_or_op_failure": "false"}

prepare_data = dg.define_asset_job(
    "prepare_data",
    selection=dg.AssetSelection.assets(raw_data, training_set, features),  # their checks come along
    description=(
        "Import and version the raw data (DVC), run its blocking data checks, build the training set and its features."
    ),
)

train_model = dg.define_asset_job(
    "train_model",
    selection=dg.AssetSelection.assets(raw_data, training_set, features, candidate_model, registered_model),
    tags=TRAINING_RETRIES,
    description=(
        "The training lifecycle: raw data (DVC) and its data checks, the training set, its features, a candidate "
        "model, the evaluation gate, and registration in MLflow (champion or challenger)."
    ),
)

retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets(training_set, features, candidate_model, registered_model),
    tags=TRAINING_RETRIES,
    description=(
        "Retraining on the checked raw data plus recent labelled days: training set -> features -> candidate -> "
        "evaluation gate -> registration. The sensor retrain_on_drift launches it with the days of "
        "the drift episode; launched by hand it takes the latest retraining.window_days labelled days."
    ),
)

nightly_scoring = dg.define_asset_job(
    "nightly_scoring",
    selection=dg.AssetSelection.assets(incoming_data, batch_predictions, drift_report),
    partitions_def=DAILY,
    tags=DAILY_RETRIES,
    description=(
        "One day: check the day's snapshot file (blocking GX suite), score it with the champion, and "
        "report drift against that model's reference. Backfill a date range to (re-)score it."
    ),
)

label_feedback = dg.define_asset_job(
    "label_feedback",
    selection=dg.AssetSelection.assets(labels, model_performance),
    partitions_def=DAILY,
    tags=DAILY_RETRIES,
    description="One day's labels, once they arrived, and the day's model performance (AUC and friends).",
)

JOBS = [prepare_data, train_model, retrain, nightly_scoring, label_feedback, approve, rollback]
