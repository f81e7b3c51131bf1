"""`make next-day` (`python -m demo.next_day`): one more simulated day after the demo, for the daemon.

Writes the snapshot file of the day after the latest one in `daily.incoming` and the labels of the
day `simulation.label_delay_days` before it, exactly as the demo's night would (the same seeded
stream and scenario, numbered from the demo's first day). With the sensors on (`make ui`, then
`make automation-on`), `labels_arrived` takes the labels in within a minute, and `incoming_arrived`
scores the new day once its partition exists: a day's partition opens when the day is over (UTC),
so the day after a fresh demo (today) is scored from midnight on, by the 02:00 schedule at the latest.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from ml import io
from ml.params import load_params
from ml.simulate import simulate_day, unseen_rows, write_labels, write_snapshot
from orchestration.arrivals import arrived
from orchestration.deployments import PROJECT_ROOT


def main(root: Path = PROJECT_ROOT) -> int:
    params = load_params(root / "params.yaml")
    days = arrived(params.incoming_uri("{date}"))
    if not days:
        print(f"no daily files under {params.incoming_uri('{date}')}; run `make demo` first", file=sys.stderr)
        return 1
    first, last = dt.date.fromisoformat(days[0].day), dt.date.fromisoformat(days[-1].day)
    daily = params.daily.model_copy(update={"start_date": first})  # the demo numbers its days from here
    number, delay = (last - first).days + 2, params.simulation.label_delay_days
    raw = unseen_rows(io.read_parquet(params.raw_uri), params)  # the demo's stream draws from these, too
    written = write_snapshot(simulate_day(raw, params.dataset, params.simulation, number)[0], daily, number, root)
    print(f"day {number} ({daily.date(number)}): snapshot {written}")
    if number - delay >= 1:
        labels = simulate_day(raw, params.dataset, params.simulation, number - delay)[1]
        print(
            f"labels of day {number - delay} ({daily.date(number - delay)}): {write_labels(labels, daily, number - delay, root)}"
        )
    if daily.date(number) >= dt.datetime.now(dt.UTC).date():
        print(
            f"{daily.date(number)} is not over yet (UTC): incoming_arrived scores it once its partition opens "
            "at midnight, the 02:00 schedule at the latest; the labels are taken in now."
        )
    print("With the sensors on (make automation-on), watch Runs in the UI: http://127.0.0.1:3000/runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
