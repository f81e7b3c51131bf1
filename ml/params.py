"""params.yaml as one validated model: every section, every key and every default in one place.

    params = load_params("params.yaml")
    params.gate.min_auc, params.daily.incoming_uri("2026-10-01"), params.model_name

Each section is a strict sub-model (an unknown key is an error), so a typo fails at load with the
key's dotted path instead of silently taking a default. A missing section takes its defaults; only
`dataset` and `daily.start_date` have none, because nothing can be guessed about the user's data.
DVC tracks the same file: each stage lists the sections it depends on (dvc.yaml).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ml import io
from ml.cost import CostsSection
from ml.features import FeatureConfig
from ml.model_card import ModelCardSection
from ml.spec import DatasetSpec, RowBounds, SpecError
from ml.training_config import TrainingSection

PARAMS_FILE = "params.yaml"


class ParamsError(ValueError):
    """params.yaml cannot be used; the message names the file and the dotted key at fault."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(_Section):
    raw: str = Field(default="data/raw/data.parquet", description="The raw Parquet file (a DVC output).")


class GateSection(_Section):
    """The evaluation gate, a blocking check on candidate_model."""

    min_auc: float | Literal["auto"] = Field(
        default="auto",
        description="The candidate's holdout ROC AUC must reach this; auto: the best single column's AUC on "
        "the same holdout plus baseline_margin.",
    )
    baseline_margin: float = Field(
        default=0.02, ge=0, le=1, description="With min_auc auto: how far the candidate must beat the best column."
    )
    max_auc_drop: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="A candidate is blocked only when its AUC trails the champion's on the same rows by more than "
        "this beyond the noise (the paired bootstrap's upper bound of the difference is below -max_auc_drop).",
    )
    min_rows: int = Field(
        default=1000,
        ge=1,
        description="Rows the candidate and the champion are compared on at least: the newest whole labelled days "
        "until they hold this many (also the least a new version's drift reference holds).",
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Level of the one-sided bootstrap bound of the AUC difference."
    )
    resamples: int = Field(default=1000, ge=100, description="Paired bootstrap resamples of the compared rows.")
    seed: int = Field(default=0, description="Seed of the bootstrap.")

    @field_validator("min_auc")
    @classmethod
    def _unit(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ValueError(f"min_auc must be auto or between 0 and 1, got {value}")
        return value


class RegistrySection(_Section):
    model_name: str | None = Field(default=None, description="Registered model name; default: the dataset's name.")
    promotion: Literal["auto", "manual"] = Field(
        default="auto", description="auto: a passed candidate becomes champion; manual: challenger, then approve."
    )


def _not_in_a_file_template(character: str) -> bool:
    """A wildcard, or a control, format, unassigned or separator character other than a plain space."""
    if character in "*?[]":
        return True
    category = unicodedata.category(character)
    return category[0] == "C" or (category[0] == "Z" and character != " ")


class DailySection(_Section):
    """Where a day's files are: one snapshot file and one labels file per day, by template."""

    start_date: dt.date = Field(description="The first daily partition.")
    incoming: str = Field(
        default="data/incoming/{date}.parquet", description="A day's snapshot file; {date} is YYYY-MM-DD."
    )
    labels: str = Field(default="data/labels/{date}.parquet", description="A day's labels file; {date} is YYYY-MM-DD.")
    rows: RowBounds = Field(default_factory=RowBounds, description="Row-count bounds of one day's snapshot.")

    @field_validator("incoming", "labels")
    @classmethod
    def _templated(cls, value: str) -> str:
        if value.count("{date}") != 1:
            raise ValueError(f"the template must contain {{date}} once, got {value!r}")
        # The folder is listed with the template as a wildcard: a control or invisible character (a
        # zero-width space, a line separator), a wildcard of its own, or a brace besides {date}'s (which
        # str.format reads: `{{date}}` names one fixed file) would make the listing find nothing (or
        # other files) while the day's files wait unscored.
        odd = sorted({c for c in value if _not_in_a_file_template(c)} | (set(value.replace("{date}", "")) & set("{}")))
        if odd:
            raise ValueError(
                f"the template {value!r} holds {', '.join(map(repr, odd))}: not allowed in a file template"
            )
        return value

    def date(self, day: int) -> dt.date:
        """The date of day `day` (1 = start_date)."""
        return self.start_date + dt.timedelta(days=day - 1)

    def day(self, date: dt.date | str) -> int:
        date = dt.date.fromisoformat(date) if isinstance(date, str) else date
        return (date - self.start_date).days + 1

    def incoming_uri(self, date: dt.date | str, root: str | Path | None = None) -> str:
        return io.resolve(self.incoming.format(date=str(date)), root)

    def labels_uri(self, date: dt.date | str, root: str | Path | None = None) -> str:
        return io.resolve(self.labels.format(date=str(date)), root)


class NoDrift(_Section):
    name: Literal["none"] = "none"


class PriceRise(_Section):
    """A numeric column (a price) rises by `factor` from `from_day`; customers it pushes above the
    raw data's `churn_above_quantile` of that column turn positive with probability `churn_extra_rate`,
    so the target depends more strongly on the column than the training data says."""

    name: Literal["price_rise"]
    from_day: int = Field(ge=1)
    column: str
    factor: float = Field(gt=0)
    churn_above_quantile: float = Field(ge=0, le=1)
    churn_extra_rate: float = Field(ge=0, le=1)


Scenario = Annotated[NoDrift | PriceRise, Field(discriminator="name")]


class SimulationSection(_Section):
    """The shipped example's simulated daily stream (ml/simulate.py). Only the simulator reads it, so a
    scenario naming another data set's column stops the simulation, not every run that loads params.yaml."""

    days: int = Field(default=30, ge=1)
    rows_per_day: int = Field(default=2000, ge=1)
    seed: int = 7
    label_delay_days: int = Field(default=3, ge=0)
    scenario: Scenario = Field(default_factory=NoDrift)


class ScoringSection(_Section):
    chunk_rows: int = Field(default=100_000, ge=1, description="Rows read, featurized and scored at a time.")
    compiled: bool = Field(
        default=True, description="LightGBM models predict compiled (lleaves), else with LightGBM itself."
    )
    shards: int = Field(
        default=2,
        ge=1,
        description="Processes (locally) or instances (cloud job) a day is scored in, each a contiguous range "
        "of the day's file (ml/shards.py).",
    )
    min_rows_per_shard: int = Field(
        default=500_000,
        ge=1,
        description="A day is split only into shards of at least this many rows: a small day is one process, "
        "since each process pays its start-up and model load.",
    )

    def shards_for(self, rows: int) -> int:
        """The shards a day of `rows` rows is scored in: `shards`, fewer when the day is small."""
        return max(1, min(self.shards, rows // self.min_rows_per_shard))


class DriftSection(_Section):
    drift_share: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description=(
            "Without the model's scores on the day's rows: the data set drifts when its drifted columns carry this "
            "share of the model's feature importance (a figure of every report)."
        ),
    )
    impact_threshold: float = Field(
        default=0.05,
        gt=0,
        description=(
            "The data set drifts when its drifted columns move the model's scores on the day's rows by this much, "
            "in standard deviations of the reference's scores (ml/drift_impact.py)."
        ),
    )
    impact_rows: int = Field(default=400, ge=10, description="Day rows the impact is measured on (a seeded sample).")
    estimated_auc_drop: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="A label-free estimated AUC this far below the reference's (and beyond noise) is drift.",
    )
    noise_z: float = Field(
        default=3.0, ge=0, description="Bootstrap standard errors of the estimated AUC drop that count as noise."
    )
    reference_rows: int = Field(default=20_000, ge=1, description="Holdout rows kept as a model's reference.")
    current_rows: int | None = Field(
        default=50_000, ge=1, description="A day's rows compared (a seeded sample beyond this; null: all)."
    )
    seed: int = 0


class TrainingWindow(_Section):
    """One window a retrain trains a candidate on (ml/windows.py)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="How the card and the lineage call it.")
    days: int = Field(
        ge=1,
        description="The latest days before the evaluation days (with a dataset.timestamp, the raw data's days "
        "before the first labelled day count too).",
    )
    raw: bool = Field(default=False, description="Plus the raw data (data.raw).")
    half_life_days: float | None = Field(
        default=None,
        gt=0,
        description="Rows weigh 0.5 ** (age in days / this), the newest day 1: the latest relation leads while the "
        "older days still teach what did not change. null: every row weighs the same.",
    )
    since_episode: bool = Field(
        default=False,
        description="Only the days from the start of the episode that asked for the retrain, and only when a "
        "collapse asked (the relation changed: the new relation alone); no candidate after a drift or a decay, "
        "without an episode or without such days.",
    )

    @model_validator(mode="after")
    def _weights_need_days(self) -> TrainingWindow:
        if self.raw and self.half_life_days is not None:
            raise ValueError(
                f"retraining.windows {self.name}: raw rows have no day to weigh by; drop raw or half_life_days"
            )
        return self


class RetrainingSection(_Section):
    """When the sensor retrain_on_drift asks for a retrain, and on which data (orchestration/retrain_policy.py)."""

    min_labelled_days: int = Field(
        default=3, ge=1, description="Labelled days of a drift before a retrain; days pooled to measure a decay."
    )
    window_days: int = Field(
        default=90, ge=1, description="Labelled days (the latest) a retrain loads; its windows pick from them."
    )
    windows: list[TrainingWindow] = Field(
        default_factory=lambda: [
            TrainingWindow(name="weighted", days=90, half_life_days=14),
            TrainingWindow(name="recent", days=28),
            TrainingWindow(name="since_episode", days=90, since_episode=True),
            TrainingWindow(name="raw_and_long", days=90, raw=True),
        ],
        min_length=1,
        description="One candidate per window; the first is the default, another wins only when better than it on "
        "the newest labelled days beyond the noise.",
    )
    cooldown_days: int = Field(default=7, ge=0, description="Days between two retrain requests, whatever the trigger.")
    max_auc_drop: float = Field(
        default=0.02, ge=0, le=1, description="An AUC fall beyond noise and this much is a decay."
    )
    noise_z: float = Field(
        default=2.0, ge=0, description="Noises (the spread of daily AUC between days) that a decay must exceed."
    )
    decay_days: int = Field(
        default=7, ge=1, description="The champion's latest labelled days pooled to measure a decay."
    )
    spread_days: int = Field(
        default=60, ge=2, description="Latest labelled days (every version) whose day-to-day spread is a day's noise."
    )
    spread_min_days: int = Field(
        default=6,
        ge=1,
        description="Labelled days of one version before the spread between days is trusted and labels are judged; "
        "1: judge at once on each day's size-based standard error alone (it under-states how much days differ).",
    )
    collapse_days: int = Field(
        default=2, ge=1, description="Latest labelled days that must each be far below the reached AUC: a collapse."
    )
    collapse_z: float = Field(
        default=5.0, ge=0, description="Noises beyond max_auc_drop that make a fall a collapse (no cooldown)."
    )
    drift_cost_z: float = Field(
        default=1.0, ge=0, description="Noises a drift's labelled fall must exceed for the drift to retrain."
    )
    max_age_days: int = Field(
        default=28,
        ge=0,
        description="A champion this old whose labels lean to a loss retrains; doubled when that bought nothing. 0: off.",
    )
    close_after_days: int = Field(
        default=3,
        ge=1,
        description="An episode closes only when this many of the champion's latest days, pooled, are good.",
    )

    @model_validator(mode="after")
    def _windows_fit(self) -> RetrainingSection:
        names = [w.name for w in self.windows]
        if len(set(names)) != len(names):
            raise ValueError(f"retraining.windows names must be unique, got {names}")
        return self


class RolloutSection(_Section):
    """When a canary (or shadow) is promoted or rolled back (serving/bake.py; the sensor canary_bake)."""

    canary_percent: float = Field(default=10.0, gt=0, le=100, description="Share of requests a canary serves.")
    bake_minutes: float = Field(default=30.0, ge=0, description="Minutes a clean canary serves before promotion.")
    min_requests: int = Field(default=200, ge=1, description="Requests per arm before any figure is judged.")
    max_p99_latency_ms: float = Field(default=250.0, gt=0, description="The canary's p99 latency may not exceed this.")
    max_p99_ratio: float = Field(default=1.5, gt=0, description="... nor this multiple of the champion's p99.")
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Share of 5xx answers the canary may give.")
    max_score_drift: float | Literal["auto"] = Field(
        default="auto",
        description="Normed Wasserstein distance of the canary's scores from the champion's beyond which they "
        "drifted; auto: calibrated on the champion's scores at the canary's size (ml/drift_calibration.py).",
    )
    max_auc_drop: float = Field(
        default=0.02, ge=0, le=1, description="The canary's AUC on labelled requests may trail the champion's by this."
    )
    min_labelled: int = Field(default=100, ge=2, description="Labelled requests per arm before AUC is judged.")

    @field_validator("max_score_drift")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if isinstance(value, float) and value <= 0:
            raise ValueError(f"max_score_drift must be auto or a positive number, got {value}")
        return value


class RequestLimits(_Section):
    """What one `POST /predict` may carry: beyond, it is refused (413, or 422 for an id) before any work."""

    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="The request body's size; 1,000 rows of the example data take ~0.46 MB."
    )
    max_rows: int = Field(default=1000, ge=1, description="Rows in one request.")
    max_request_id_chars: int = Field(
        default=128, ge=1, description="A request id's length (a row's request_id or id, or the X-Request-ID header)."
    )


class ServingSection(_Section):
    """The real-time endpoint (serving/): where it listens, how often it looks for new models, its request log."""

    host: str = Field(default="127.0.0.1", description="The address the endpoint listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Its port.")
    poll_seconds: float = Field(
        default=5.0, gt=0, description="How often the endpoint re-reads the registry's aliases and the rollout state."
    )
    log_flush_seconds: float = Field(default=2.0, gt=0, description="The request log is written at least this often.")
    log_flush_rows: int = Field(default=20_000, ge=1, description="... or as soon as this many rows are queued.")
    log_spool_dir: str = Field(
        default="var/serving/request_log_spool",
        description="Local folder (relative to the project) where request-log writes that failed wait to be retried.",
    )
    log_spool_max_mb: float = Field(
        default=1024.0,
        gt=0,
        description="The spool's bound; beyond it rows wait in memory, then are dropped (counted).",
    )
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    limits: RequestLimits = Field(default_factory=RequestLimits)


class Params(_Section):
    """The whole of params.yaml."""

    data: DataSection = Field(default_factory=DataSection)
    dataset: DatasetSpec
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    training: TrainingSection = Field(default_factory=TrainingSection)
    gate: GateSection = Field(default_factory=GateSection)
    registry: RegistrySection = Field(default_factory=RegistrySection)
    daily: DailySection
    simulation: SimulationSection = Field(default_factory=SimulationSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    drift: DriftSection = Field(default_factory=DriftSection)
    retraining: RetrainingSection = Field(default_factory=RetrainingSection)
    serving: ServingSection = Field(default_factory=ServingSection)
    model_card: ModelCardSection = Field(default_factory=ModelCardSection)
    costs: CostsSection = Field(default_factory=CostsSection)

    # The project folder that relative paths in the file are taken from (the file's folder).
    _root: Path | None = PrivateAttr(default=None)

    @property
    def root(self) -> Path | None:
        return self._root

    @property
    def model_name(self) -> str:
        """The registered model's name: registry.model_name, else the dataset's name."""
        return self.registry.model_name or self.dataset.name

    @property
    def raw_uri(self) -> str:
        return io.resolve(self.data.raw, self._root)

    def incoming_uri(self, day: dt.date | str) -> str:
        return self.daily.incoming_uri(day, self._root)

    def labels_uri(self, day: dt.date | str) -> str:
        return self.daily.labels_uri(day, self._root)


def _problems(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(file)"
        message = (
            "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"].removeprefix("Value error, ")
        )
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def parse_params(document: Any, origin: str = PARAMS_FILE, root: str | Path | None = None) -> Params:
    """Validate a params mapping (as read from YAML); relative paths in it are taken from `root`."""
    if not isinstance(document, dict):
        raise ParamsError(f"{origin}: expected a mapping of sections, got {type(document).__name__}")
    try:
        params = Params.model_validate(document)
    except ValidationError as error:
        raise ParamsError(f"{origin}: {_problems(error)}") from None
    try:
        params.dataset.source.resolved_format  # noqa: B018 - an unknown source suffix is a params error, raised at load
    except SpecError as error:
        raise ParamsError(f"{origin}: {error}") from None
    params._root = Path(root).resolve() if root is not None else None
    return params


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """params.yaml from `path`; relative paths in it are taken from the file's folder."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file; the project's settings live in params.yaml") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(document, origin=str(path), root=path.resolve().parent)
