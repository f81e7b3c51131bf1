"""A short demo run for the browser tests: the history a newcomer's UI shows, in a few minutes.

On a trained project copy (champion v1, its gate passed): three simulated nights told by the demo's
own story module (a price rise on night 3, labels one day late), a fourth day whose file breaks the
data checks, and two more days delivered but not scored, for a backfill from the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from tests.conftest import clear_daily_files, set_params

NIGHTS = 3
BAD_DAY = 4
UNSCORED_DAYS = (5, 6)
BAD_COLUMN, BAD_VALUE = "monthly_charges", -10.0  # below the spec's minimum of 0


@dataclass(frozen=True)
class History:
    scored: list[str]  # days checked, scored and drift-reported
    drifted: list[str]  # of those, the days whose verdict is drift
    bad_day: str  # its file fails the blocking `validity` check; nothing was scored
    unscored: list[str]  # files delivered, never scored


def seed(project: Path, reports_url: str) -> History:
    from demo.story import launch, run_nights
    from ml.io import read_parquet
    from ml.params import load_params
    from ml.simulate import simulate_day, write_snapshot
    from orchestration.definitions import definitions
    from orchestration.deployments import local

    set_params(
        project,
        simulation={"days": NIGHTS, "label_delay_days": 1, "scenario": {"from_day": NIGHTS}},
        retraining={"min_labelled_days": 3},
    )
    clear_daily_files(project)
    params = load_params(project / "params.yaml")
    spec, daily, simulation = params.dataset, params.daily, params.simulation
    raw = read_parquet(params.raw_uri)
    resources = local(project, environ={"KEEL_REPORTS_URL": reports_url})
    defs = definitions(resources)
    with dg.DagsterInstance.from_config(str(project / "var" / "dagster")) as instance:
        nights = run_nights(project, defs, instance, resources)
        assert all(night.success for night in nights), [(n.day, n.verdict) for n in nights]

        snapshot = simulate_day(raw, spec, simulation, BAD_DAY)[0]
        snapshot.loc[:2, BAD_COLUMN] = BAD_VALUE
        write_snapshot(snapshot, daily, BAD_DAY, project)
        bad_day = str(daily.date(BAD_DAY))
        assert not launch(defs, "nightly_scoring", instance, partition_key=bad_day).success

        for day in UNSCORED_DAYS:
            write_snapshot(simulate_day(raw, spec, simulation, day)[0], daily, day, project)
    return History(
        scored=[n.day for n in nights],
        drifted=[n.day for n in nights if n.verdict == "drift"],
        bad_day=bad_day,
        unscored=[str(daily.date(day)) for day in UNSCORED_DAYS],
    )
