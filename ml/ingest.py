"""Import the raw data: source file -> the project's raw Parquet file. Run by the DVC stage `import_raw`.

    python -m ml.ingest --params params.yaml --out data/raw/data.parquet

The import copies what arrived (adding a generated id if the spec asks for one) and types the id,
target and categorical columns as text; it judges nothing else, that is the data checks' job. The
output is written atomically, so a failed import leaves the previous raw file in place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ml import io
from ml.params import ParamsError, load_params
from ml.sources import SourceError, read_source
from ml.spec import DatasetSpec, SpecError


def with_ids(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Add the generated id column first, if the spec asks the import to make ids."""
    if spec.id.generate is None:
        return frame
    if spec.id.column in frame.columns:
        raise SourceError(
            f"dataset.id.generate is {spec.id.generate} but the source already has a column "
            f"{spec.id.column!r}; drop `generate` to use it, or name the generated column differently"
        )
    ids = [f"{spec.id.prefix}{n:07d}" for n in range(1, len(frame) + 1)]
    ids_column = pd.Series(ids, index=frame.index, dtype=object, name=spec.id.column)  # text, even with no rows
    return pd.concat([ids_column, frame], axis=1)


def import_raw(spec: DatasetSpec, root: str | Path, out: str) -> pd.DataFrame:
    frame = with_ids(read_source(spec, root), spec)
    io.write_parquet(frame, io.resolve(out, root))
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="YAML file with the `dataset:` spec")
    parser.add_argument("--out", required=True, help="raw Parquet file to write")
    args = parser.parse_args(argv)
    root = Path(args.params).resolve().parent
    try:
        spec = load_params(args.params).dataset
        frame = import_raw(spec, root, args.out)
    except (ParamsError, SpecError, SourceError) as error:
        print(f"import failed: {error}", file=sys.stderr)
        return 2
    print(f"imported {len(frame)} rows x {frame.shape[1]} columns from {spec.source.uri} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
