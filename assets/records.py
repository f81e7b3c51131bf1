"""What each asset hands to the next: small typed records of the files it wrote, their versions and lineage.

The IO manager (resources/records.py) keeps them as JSON in the artifact store and passes them to
the assets that name them as arguments. The files stay where resources/layout.py puts them. Each
record carries `run_id`, the Dagster run that made it, so a guard can ask how *that* run's checks went.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str  # the Dagster run that materialized it


class RawData(Record):
    """The imported raw file (a DVC output) and DVC's md5 of it."""

    uri: str
    md5: str
    rows: int


class LabelledDay(Record):
    """A day's labels file as it was taken in."""

    day: str
    uri: str
    md5: str
    rows: int


class IncomingDay(Record):
    """A day's snapshot file as its data checks saw it."""

    day: str
    uri: str
    md5: str
    rows: int


class DayLineage(BaseModel):
    """One labelled day a training set added: both files by md5, and the rows they joined into."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    day: str
    incoming: str
    labels: str
    rows: int


class TrainingSet(Record):
    """The checked raw rows plus recent labelled days, each row marked train or holdout."""

    raw_data_version: str  # the raw file's md5
    recent_days: list[DayLineage]
    rows_uri: str  # every row with its `split`
    holdout_uri: str  # the raw holdout rows: any model is scored on them the same way
    reference_uri: str  # the newest holdout rows: a registered model's drift reference
    version: str

    @property
    def partitions(self) -> str:
        """One compact entry per day, `day:incoming md5[:12]/labels md5[:12]`, short enough for an MLflow tag."""
        return ",".join(f"{d.day}:{d.incoming[:12]}/{d.labels[:12]}" for d in self.recent_days) or "none"


class Features(Record):
    """The feature state fitted on a training set's train rows, and the feature table of all its rows."""

    training_set: TrainingSet
    state_uri: str
    table_uri: str
    version: str


class Candidate(Record):
    """A trained model artifact, tracked in MLflow, not yet judged by the gate."""

    features: Features
    artifact_uri: str
    manifest_sha256: str
    mlflow_run_id: str
    model_family: str
    metrics: dict[str, float]
    code_version: str
    git_commit: str

    @property
    def training_set(self) -> TrainingSet:
        return self.features.training_set


class ScoredDay(Record):
    """A day's scores, the model version that made them, and the sample kept for monitoring."""

    day: str
    incoming: IncomingDay
    model: str
    model_version: int
    model_manifest_sha256: str
    predictions_uri: str
    capture_uri: str
    rows: int
