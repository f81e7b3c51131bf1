"""The Dagster UI as a person uses it, in headless Chromium, over a short demo run's history
(tests/browser/history.py): lineage, checks, partitions, plots, the drift report, and a backfill.

The tests run in file order in one worker; the backfill comes last because it changes the partitions.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.browser.conftest import Ui, screenshot

STATUSES = ("Failed", "Materialized", "Materializing", "Missing")
FINISHED = re.compile(r"Succeeded|Failed|Canceled|Completed")  # a backfill's final statuses
BACKFILL_SECONDS = 900  # two nightly runs queued by the backfill daemon, on two busy cores

# The drawn graph: asset nodes (SVG foreignObjects) and edges (paths from a node's right side to the
# next node's left side, in the same SVG coordinates).
DRAWN_GRAPH = """() => {
  const svg = [...document.querySelectorAll('svg')]
    .sort((a, b) => b.querySelectorAll('*').length - a.querySelectorAll('*').length)[0];
  const nodes = [...svg.querySelectorAll('foreignObject:not(.group)')].map(f => ({
    text: f.textContent || '',
    x: +f.getAttribute('x'), y: +f.getAttribute('y'), w: +f.getAttribute('width'), h: +f.getAttribute('height'),
  }));
  const edges = [...svg.querySelectorAll('path')].filter(p => !p.closest('marker'))
    .map(p => (p.getAttribute('d').match(/-?[0-9.]+/g) || []).map(Number));
  return {nodes, edges};
}"""


def lifecycle() -> tuple[set[str], set[tuple[str, str]]]:
    """Every asset of the code location and every dependency between them, from the definitions."""
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    names = {key.to_user_string() for key in keys}
    edges = {(parent.to_user_string(), key.to_user_string()) for key in keys for parent in graph.get(key).parent_keys}
    return names, edges


def drawn_lineage(page: Page, names: set[str]) -> tuple[set[str], set[tuple[str, str]]]:
    drawn = page.evaluate(DRAWN_GRAPH)
    boxes = {}
    for node in drawn["nodes"]:
        found = sorted((node["text"].find(name), name) for name in names if name in node["text"])
        if found:
            boxes[found[0][1]] = node

    def node_at(x: float, y: float, side: str) -> str | None:
        for name, box in boxes.items():
            edge_x = box["x"] + box["w"] if side == "right" else box["x"]
            if abs(edge_x - x) <= 12 and box["y"] <= y <= box["y"] + box["h"]:
                return name
        return None

    edges = set()
    for points in drawn["edges"]:
        if len(points) >= 4:
            edges.add((node_at(points[0], points[1], "right"), node_at(points[-2], points[-1], "left")))
    return set(boxes), edges


def test_the_asset_graph_shows_every_lifecycle_asset_and_the_lineage_between_them(page: Page, ui: Ui):
    names, dependencies = lifecycle()
    page.goto("/asset-groups")
    for group in ("data", "training", "registry", "scoring", "monitoring"):
        expect(page.locator("foreignObject.group", has_text=group).first).to_be_visible()
    page.locator("button:has([aria-label='settings'])").last.click()  # the graph's settings menu
    page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
    page.keyboard.press("Escape")  # close the menu
    for name in names:
        expect(page.locator("foreignObject:not(.group)", has_text=name).first).to_be_visible()
    deadline = time.monotonic() + 30  # edges are laid out by a web worker after the nodes
    while time.monotonic() < deadline:
        shown, edges = drawn_lineage(page, names)
        if edges == dependencies:
            break
        page.wait_for_timeout(500)
    screenshot(page, "asset_graph_expanded")
    assert shown == names
    assert edges == dependencies, f"missing {dependencies - edges}, unexpected {edges - dependencies}"
    assert ("raw_data", "training_set") in edges and ("batch_predictions", "drift_report") in edges


def open_check(page: Page, asset: str, check: str) -> None:
    page.goto(f"/assets/{asset}?view=checks")
    page.get_by_text(check, exact=True).first.click()  # in the list of the asset's checks
    expect(page.get_by_text("Latest execution")).to_be_visible()
    expect(page.get_by_text(check, exact=True)).to_have_count(3)  # list entry (name, subtitle) and the detail's title


def test_an_asset_page_shows_a_passing_gate_and_a_failing_data_check_on_a_bad_partition(page: Page, ui: Ui):
    open_check(page, "candidate_model", "evaluation_gate")
    body = page.locator("body")
    expect(body).to_contain_text("This is a blocking asset check")
    expect(body).to_contain_text("Passed")
    expect(body).to_contain_text(re.compile(r"passed: AUC 0\.\d+ >= minimum"))
    screenshot(page, "check_evaluation_gate_passed")

    open_check(page, "incoming_data", "validity")
    expect(body).to_contain_text("Failed")
    expect(body).to_contain_text(ui.history.bad_day)  # the partition the failure belongs to
    failures = body.locator("table", has_text="expect_column_values_to_be_between").last
    expect(failures).to_contain_text("monthly_charges")
    expect(failures).to_contain_text("-10.0")
    for passing in ("schema", "completeness", "uniqueness", "volume"):  # the list beside it
        expect(body.get_by_text(passing, exact=True).first).to_be_visible()
    expect(body.get_by_text("Failed", exact=True).first).to_be_visible()
    screenshot(page, "check_validity_failed_on_bad_day")


def expect_counts(page: Page, counts: dict[str, int]) -> None:
    """The status filters above the partition list show these counts (waiting while the page loads)."""
    for status, count in counts.items():
        expect(page.locator("label", has_text=re.compile(rf"^{status} \({count}\)"))).to_be_visible()


def partitions_shown(page: Page, status: str, name_filter: str = "") -> list[str]:
    """The partitions the list shows with only `status` ticked (and a name filter), as a person filters it."""
    for each in STATUSES:
        label = page.locator("label", has_text=re.compile(rf"^{each} \(\d+\)"))
        if label.locator("input").is_checked() != (each == status):
            label.click()
    page.get_by_placeholder("Filter by name").fill(name_filter)
    shown, previous = None, []
    while shown != previous:  # read until the re-rendered list holds still
        page.wait_for_timeout(500)
        previous, shown = (
            shown,
            page.locator("[data-tooltip]").evaluate_all("els => els.map(e => e.getAttribute('data-tooltip'))"),
        )
    return sorted(k for k in shown if re.fullmatch(r"\d{4}-\d{2}-\d{2}", k or ""))


def test_the_partitions_of_batch_predictions_show_materialized_failed_and_missing_days(page: Page, ui: Ui):
    from assets.partitions import DAILY

    history = ui.history
    page.goto("/assets/batch_predictions?view=partitions")
    total = len(DAILY.get_partition_keys())
    expect_counts(page, {"Failed": 1, "Materialized": 3, "Materializing": 0, "Missing": total - 4})
    screenshot(page, "partitions_batch_predictions")
    assert partitions_shown(page, "Materialized") == history.scored
    assert partitions_shown(page, "Failed") == [history.bad_day]
    month = history.unscored[0][:7]
    missing = partitions_shown(page, "Missing", month)
    assert set(history.unscored) <= set(missing)
    assert not set(missing) & {*history.scored, history.bad_day}


def test_the_evaluation_plots_and_the_drift_summary_are_in_the_metadata_view(page: Page, ui: Ui):
    page.goto("/assets/candidate_model")
    page.locator("tr", has_text="plots").last.get_by_text("[Show Markdown]").click()
    images = page.get_by_role("dialog").locator("img")
    expect(images).to_have_count(4)
    shown = images.evaluate_all("els => els.map(e => [e.alt, e.complete, e.naturalWidth, e.naturalHeight])")
    assert {alt for alt, *_ in shown} == {"roc", "precision_recall", "calibration", "feature_importance"}
    assert all(complete and width > 200 and height > 200 for _, complete, width, height in shown), shown
    screenshot(page, "evaluation_plots")
    page.keyboard.press("Escape")

    day = ui.history.drifted[0]
    page.goto("/assets/drift_report?view=partitions")
    page.get_by_placeholder("Filter by name").fill(day)
    page.locator(f"[data-tooltip='{day}']").click()
    body = page.locator("body")
    expect(body).to_contain_text(f"drift on {day}, scored by v1")
    expect(body).to_contain_text("drifted columns: monthly_charges")
    columns = body.locator("table", has_text="threshold").last
    expect(columns.locator("tr", has_text="monthly_charges")).to_contain_text("true")
    screenshot(page, "drift_summary")

    link = body.locator(f"a[href='{ui.reports_url}/monitoring/drift/{day}.html']").first  # report_url
    with page.context.expect_page() as opened:
        link.click()
    report = opened.value
    expect(report.locator("body")).to_contain_text("Verdict: drift", timeout=60_000)  # our verdict, on top
    expect(report.locator("body")).to_contain_text("calibrated on the reference")
    expect(report.locator("body")).to_contain_text("monthly_charges")
    screenshot(report, "evidently_report")
    report.close()


def test_the_schedule_and_sensors_say_what_they_do_and_a_sensor_lists_the_runs_it_launched(page: Page, ui: Ui):
    page.goto("/automation")
    body = page.locator("body")
    for name in ("nightly_scoring_schedule", "labels_arrived", "retrain_on_drift"):
        expect(body).to_contain_text(name)
    page.goto("/locations/keel/schedules/nightly_scoring_schedule")
    expect(body).to_contain_text("Every night at 02:00 (UTC)")
    page.goto("/locations/keel/sensors/retrain_on_drift")
    expect(body).to_contain_text("retrains when it buys AUC, not on a calendar")
    page.goto("/locations/keel/sensors/labels_arrived")
    expect(body).to_contain_text("launches the label_feedback job")
    page.get_by_role("button", name="Runs").click()
    labelled = ui.history.scored[: len(ui.history.scored) - 1]  # labels arrive one day late
    expect(page.locator("tr", has_text="label_feedback")).to_have_count(len(labelled))
    screenshot(page, "sensor_labels_arrived_runs")


def backfill_row(page: Page, backfill_id: str) -> str:
    """The backfill's row in the job's backfill history; empty while the page does not list it yet."""
    row = page.locator("tr", has_text=backfill_id)
    try:
        expect(row).to_be_visible(timeout=15_000)
    except AssertionError:
        return ""
    return row.inner_text()


# Last in the file: it turns missing days into materialized ones.
def test_a_backfill_launched_in_the_ui_completes_and_its_days_turn_materialized(page: Page, ui: Ui):
    days = ui.history.unscored
    page.goto("/locations/keel/jobs/nightly_scoring/partitions")
    page.locator("button", has_text="Materialize").first.click()
    dialog = page.get_by_role("dialog")
    selection = dialog.locator("input[type=text]")
    selection.fill(f"[{days[0]}...{days[-1]}]")
    selection.press("Enter")
    expect(dialog).to_contain_text(f"{len(days)} partitions")
    screenshot(page, "backfill_dialog")
    dialog.get_by_role("button", name="Launch backfill").click()
    created = page.get_by_text(re.compile(r"Created backfill \w+"))
    expect(created).to_be_visible()
    backfill_id = created.inner_text().split()[-1]

    deadline = time.monotonic() + BACKFILL_SECONDS
    status = backfill_row(page, backfill_id)
    while not FINISHED.search(status):  # the daemon queues and runs one run per day
        assert time.monotonic() < deadline, f"the backfill did not finish in {BACKFILL_SECONDS}s: {status!r}"
        page.wait_for_timeout(5000)
        page.reload()
        status = backfill_row(page, backfill_id)
    assert "Succeeded" in status, status
    expect(page.locator("tr", has_text=backfill_id)).to_contain_text("Succeeded")  # the cell reloads now and then
    screenshot(page, "backfill_finished")

    page.goto("/assets/batch_predictions?view=partitions")
    expect_counts(page, {"Materialized": len(ui.history.scored) + len(days)})
    assert partitions_shown(page, "Materialized") == sorted([*ui.history.scored, *days])
    assert not set(days) & set(partitions_shown(page, "Missing", days[0][:7]))
    screenshot(page, "partitions_after_backfill")
    page.goto("/assets/drift_report?view=partitions")  # the whole nightly job ran for each day
    assert set(days) <= set(partitions_shown(page, "Materialized"))
