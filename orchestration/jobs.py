"""Jobs users launch from the UI or the CLI (`dagster job execute -m orchestration.definitions -j NAME`)."""

import dagster as dg

from assets.features import features
from assets.raw_data import raw_data

prepare_data = dg.define_asset_job(
    "prepare_data",
    selection=dg.AssetSelection.assets(raw_data, features),  # their data checks come along
    description="Import and version the raw data (DVC), run its blocking data checks, build the features.",
)
