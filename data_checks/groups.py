"""The data checks shown in the Dagster UI, one per family of expectations.

Kept apart from the GX code so that loading the Dagster definitions does not import GX (~9 s).
"""

CHECK_DESCRIPTIONS = {
    "schema": "Every column the dataset spec names is present with a usable type; unexpected columns per the spec.",
    "completeness": "No missing values, except in the columns the spec calls nullable.",
    "validity": "Numeric values within the spec's ranges; categories, booleans and target labels from the allowed sets.",
    "uniqueness": "The id column has no duplicates.",
    "volume": "The row count lies within the spec's bounds.",
}
CHECK_NAMES = list(CHECK_DESCRIPTIONS)
