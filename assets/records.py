"""What each asset hands to the next: small typed records of what it made, its versions and lineage.

The IO manager (resources/records.py) keeps them as JSON in the artifact store and passes them to
the assets that name them as arguments. A record holds what identifies its files (the run that made
them, the day), never their paths: where a file lives is computed from that identity in one place
(resources/layout.py, or params.yaml's templates for the daily files), so records survive a moved
project or store. Each record carries `run_id`, so a guard can ask how *that* run's checks went.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ml.params import Params
from ml.windows import WindowDays
from resources import layout
from resources.storage import ArtifactStore


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str  # the Dagster run that materialized it


class RawData(Record):
    """The imported raw file (a DVC output, params.yaml `data.raw`) and DVC's md5 of it."""

    md5: str
    rows: int

    def uri(self, params: Params) -> str:
        return params.raw_uri


class DayFile(Record):
    """One day's file, as the asset that took it in read it: its md5 and row count."""

    day: str
    md5: str
    rows: int


class IncomingDay(DayFile):
    """A day's snapshot file (params.yaml `daily.incoming`) as its data checks saw it."""

    def uri(self, params: Params) -> str:
        return params.incoming_uri(self.day)


class LabelledDay(DayFile):
    """A day's labels file (params.yaml `daily.labels`) as it was taken in."""

    def uri(self, params: Params) -> str:
        return params.labels_uri(self.day)


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
    # Whether every raw row is in the rows file (a window takes the raw data); else only `raw_days`' rows.
    raw_included: bool = True
    # The newest whole labelled days every candidate is judged on and none trains on (the holdout);
    # empty: the holdout is a seeded share of every row (no labelled days yet, or only one).
    evaluation_days: list[str] = []
    windows: list[WindowDays] = []  # the candidates to train; empty: one, on every train row
    # The raw data's dates that are days of the windows (ml/windows.py raw_days): their raw rows carry
    # the date as their day in the rows file; the raw data's other rows carry `raw`.
    raw_days: list[str] = []
    # The windows without their newest `choice_gap` days, whose models choose the window (ml/windows.py);
    # empty: the windows' own models choose.
    lagged_windows: list[WindowDays] = []
    choice_gap: int = 0
    baseline_column: str = "none"  # the best single column on the holdout (ml/baseline.py) ...
    baseline_auc: float = 0.5  # ... and its AUC: the bar of gate.min_auc auto
    version: str

    def rows_uri(self, store: ArtifactStore) -> str:
        """Every row with its `split`."""
        return layout.training_set(store, self.run_id, layout.TRAINING_ROWS)

    def holdout_uri(self, store: ArtifactStore) -> str:
        """The raw holdout rows: any model is scored on them the same way."""
        return layout.training_set(store, self.run_id, layout.HOLDOUT_ROWS)

    def reference_uri(self, store: ArtifactStore) -> str:
        """The newest holdout rows: a registered model's drift reference."""
        return layout.training_set(store, self.run_id, layout.REFERENCE_ROWS)

    @property
    def partitions(self) -> str:
        """One compact entry per day, `day:incoming md5[:12]/labels md5[:12]`, short enough for an MLflow tag."""
        return ",".join(f"{d.day}:{d.incoming[:12]}/{d.labels[:12]}" for d in self.recent_days) or "none"


class Features(Record):
    """The feature state fitted on a training set's train rows, and the feature table of all its rows."""

    training_set: TrainingSet
    version: str

    def state_uri(self, store: ArtifactStore) -> str:
        return layout.features(store, self.run_id, layout.FEATURE_STATE)

    def table_uri(self, store: ArtifactStore) -> str:
        return layout.features(store, self.run_id, layout.FEATURE_TABLE)


class Candidate(Record):
    """A trained model artifact, tracked in MLflow, not yet judged by the gate."""

    features: Features
    manifest_sha256: str
    mlflow_run_id: str
    model_family: str
    metrics: dict[str, float]
    code_version: str
    git_commit: str
    window: str = ""  # the window that won (TrainingSet.windows); empty: one model on every train row
    window_reason: str = ""  # why it won, in words
    window_aucs: dict[str, float] = {}  # every window's AUC on the evaluation days

    @property
    def training_set(self) -> TrainingSet:
        return self.features.training_set

    def artifact_uri(self, store: ArtifactStore) -> str:
        if self.window:
            return layout.candidate_window(store, self.run_id, self.window)
        return layout.candidate(store, self.run_id)


class ScoredDay(Record):
    """A day's scores, the model version that made them, and the sample kept for monitoring."""

    day: str
    incoming: IncomingDay
    model: str
    model_version: int
    model_manifest_sha256: str
    rows: int

    def predictions_uri(self, store: ArtifactStore) -> str:
        """The day's output folder; read its scores with `ml.predictions.read_predictions`."""
        return layout.predictions(store, self.day)

    def capture_uri(self, store: ArtifactStore) -> str:
        """The capture file the day's manifest names (ml/predictions.py)."""
        import ml.predictions

        return ml.predictions.capture_uri(layout.predictions(store, self.day))
