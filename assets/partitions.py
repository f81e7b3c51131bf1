"""The daily partitions: one per day from params.yaml `daily.start_date`.

A partitions definition is fixed when the code location loads, so the start date is read then; every
other setting is read when a run or a sensor tick needs it (resources/params.py).
"""

from pathlib import Path

import dagster as dg

from ml.params import PARAMS_FILE, load_params

DAILY = dg.DailyPartitionsDefinition(
    start_date=str(load_params(Path(__file__).resolve().parents[1] / PARAMS_FILE).daily.start_date)
)
