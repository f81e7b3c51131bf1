"""served_requests: the answers the endpoint gave on a day, in the shapes the monitoring assets read.

The request log (serving/request_log.py) holds one row per request and arm. The answers callers
received (`served`, status 200) become a predictions file (id, score, model_version), the shape
model_performance joins with the day's labels, and the champion's answers a capture (id, the
feature columns, score), the shape ml.drift.load_capture reads for a drift report against the
champion's reference. Both files are written all-or-nothing.
"""

import dagster as dg

import ml.io
from assets.partitions import DAILY
from ml.drift import SCORE
from resources import layout
from resources.params import ParamsResource
from resources.storage import ArtifactStore
from serving.bake import CHAMPION_ARM
from serving.request_log import read_day


@dg.asset(
    partitions_def=DAILY,
    group_name="serving",
    kinds={"parquet"},
    owners=["team:ml-platform"],
    description=(
        "A day of the endpoint's answers from its request log: every served answer as predictions "
        "(id, score, model_version: what model_performance joins with labels) and the champion's as a "
        "capture (id, feature columns, score: what a drift report reads), with the requests, errors and "
        "versions per arm in the metadata."
    ),
)
def served_requests(context: dg.AssetExecutionContext, params: ParamsResource, storage: ArtifactStore):
    day, spec = context.partition_key, params.load().dataset
    skipped: list[str] = []
    log = read_day(storage.root, day, skipped)
    for problem in skipped:  # a stray file in the log's folder is named, and the day goes on without it
        context.log.warning(f"request log: skipped {problem}")
    if log.empty:
        raise dg.Failure(description=f"no request was logged on {day} (serving/requests/day={day}/ is empty)")
    if spec.id.column not in log.columns:
        raise dg.Failure(description=f"the request log of {day} has no id column {spec.id.column!r}")
    answered = log[log["served"].astype(bool) & (log["status"] == 200) & log["score"].notna()]
    predictions = answered[[spec.id.column, SCORE, "model_version"]].drop_duplicates(spec.id.column, keep="last")
    capture = answered[answered["arm"] == CHAMPION_ARM][[spec.id.column, *spec.feature_columns, SCORE]]
    ml.io.write_parquet(predictions.reset_index(drop=True), layout.served_predictions(storage, day))
    ml.io.write_parquet(capture.reset_index(drop=True), layout.served_capture(storage, day))
    arms = log.groupby("arm").agg(requests=("request_id", "size"), errors=("status", lambda s: int((s >= 500).sum())))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(predictions),
            "logged_rows": len(log),
            "per_arm": dg.MetadataValue.json(
                {arm: {k: int(v) for k, v in row.items()} for arm, row in arms.to_dict("index").items()}
            ),
            "versions": dg.MetadataValue.json(sorted(int(v) for v in answered["model_version"].unique())),
            "predictions": dg.MetadataValue.path(layout.served_predictions(storage, day)),
            "capture": dg.MetadataValue.path(layout.served_capture(storage, day)),
            "capture_rows": len(capture),
            "skipped_files": dg.MetadataValue.json(skipped),
        }
    )
