"""A drift page whose Evidently script is shared beside it still draws Evidently's report in Chromium."""

import numpy as np

from demo.ui import serve_reports
from ml.drift import drift_report, evidently_bundle, reference_profile, with_shared_bundle
from tests.browser.conftest import free_port


def test_the_page_draws_evidentlys_report_with_the_shared_script(browser, spec, telco_raw, tmp_path):
    rows = telco_raw.sample(frac=1.0, random_state=0).reset_index(drop=True)
    scores = np.random.default_rng(0).beta(2, 5, len(rows))
    half = len(rows) // 2
    reference = reference_profile(rows[:half], scores[:half], spec, max_rows=2_000, seed=0)
    current = reference_profile(rows[half:], scores[half:], spec, max_rows=2_000, seed=0)
    page_text, script = with_shared_bundle(drift_report(reference, current, spec, drift_share=0.3).html)
    folder = tmp_path / "store" / "monitoring" / "drift"
    folder.mkdir(parents=True)
    (folder / "2026-10-01.html").write_text(page_text, encoding="utf-8")
    (folder / script).write_text(evidently_bundle()[1], encoding="utf-8")
    port = free_port()
    server = serve_reports(tmp_path / "store", "127.0.0.1", port)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{port}/monitoring/drift/2026-10-01.html")
        root = page.locator("div[id^='root_']").first
        # Evidently's script draws its widgets into the root: the column table names the spec's columns.
        root.get_by_text("tenure").first.wait_for(timeout=60_000)
        assert root.inner_text().strip() and not errors, errors
    finally:
        context.close()
        server.shutdown()
