"""Script, HTML and markup from data or users stay text in every page the project writes: the drift report
(Evidently's embedded data included) and the model card, opened in Chromium through `make ui`'s report
server. A payload that ran would set `window.__pwned` or open a dialog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from demo.ui import serve_reports
from ml.drift import drift_report
from ml.model_card import ModelCardSection, build_card, label_balance, render_html
from ml.spec import DatasetSpec
from tests.browser.conftest import free_port, screenshot

MARK = "window.__pwned=(window.__pwned||[]).concat"
# One of each way out: end the script block, an element with a handler, Markdown links and images,
# an entity, Slack's markup, and the line separators JavaScript once read as line ends.
PAYLOADS = [
    f"</script><script>{MARK}('script')</script>",
    f"<img src=x onerror=\"{MARK}('img')\">",
    f"<svg onload=\"{MARK}('svg')\"></svg>",
    f"[click](javascript:{MARK}('link'))",
    "![pixel](http://127.0.0.1:9/pixel.png)",
    "<b>bold</b> &amp; *em* `code` <!channel> <https://example.com|text>",
    "line\u2028separator\u2029end",
]
HOSTILE = " ".join(PAYLOADS)
# The markup Plotly itself draws inside a chart's labels and titles (bold, italics, links).
PLOTLY_MARKUP = '<a href="http://127.0.0.1:9/phish">phish</a> <i>it</i> <b>loud</b>'


def hostile_spec() -> DatasetSpec:
    return DatasetSpec(
        name="hostile",
        source={"uri": "hostile.csv"},
        target={"column": f"target {PAYLOADS[0]}", "positive": "1", "negative": "0"},
        id={"column": f"id {PAYLOADS[1]}"},
        columns={
            "numeric": [f"amount {PAYLOADS[0]}"],
            "categorical": [f"plan {PAYLOADS[1]}", f"region {PAYLOADS[3]}"],  # no categories listed
            "boolean": [f"flag {PAYLOADS[2]}"],
        },
    )


def profile(spec: DatasetSpec, categories: list[str], rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount, plan, region = spec.columns.numeric[0], *spec.columns.categorical
    return pd.DataFrame(
        {
            amount: rng.normal(size=rows),
            plan: rng.choice(categories, rows),
            region: rng.choice([*categories, PAYLOADS[5], PLOTLY_MARKUP], rows),
            spec.columns.boolean[0]: rng.choice(["true", "false"], rows),
            "prediction": rng.random(rows),
        }
    )


def hostile_card() -> dict:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    human = ModelCardSection(
        owner=HOSTILE,
        intended_use=HOSTILE,
        out_of_scope_uses=PAYLOADS,
        limitations=[HOSTILE],
        ethical_considerations=[HOSTILE],
        risk_rating="Low",
    )
    move = {"when": "2026-12-03T10:00:00+00:00", "alias": "champion", "from_version": 1, "to_version": 2}
    return build_card(
        model=f"churn {PAYLOADS[0]}",
        version=2,
        created="2026-12-03T10:00:00+00:00",
        description=HOSTILE,
        family="lightgbm",
        hyperparameters={"num_leaves": 8},
        human=human,
        training_data={
            "data_version": HOSTILE,
            "training_set_version": PAYLOADS[1],
            "partitions": PAYLOADS[3],
            "train_rows": 5000,
            "holdout_rows": 200,
            "label_balance": label_balance(labels),
        },
        intervals={"roc_auc": {"value": 0.8, "lower": 0.75, "upper": 0.85}},
        level=0.95,
        gate={"decision": "passed", "reason": HOSTILE, "champion_version": 1, "champion_auc": 0.79},
        importance={f"amount {PAYLOADS[0]}": 0.6, f"plan {PAYLOADS[1]}": 0.4},
        plots=[PAYLOADS[2]],
        drift_reference={"sha256": PAYLOADS[4], "rows": 200},
        lineage={"git_commit": HOSTILE, "dagster_run": PAYLOADS[0]},
        # An alias move's reason and its `dagster/user` tag are whatever the launcher typed.
        alias_history=[{**move, "kind": "rollback", "reason": HOSTILE, "actor": HOSTILE}],
        cost={"training": {"amount": 2.5, "unit": "cpu_seconds", "basis": HOSTILE}},
        artifact_uri="file:///mlruns/model",
    )


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The hostile drift report and model card in a store, served as `make ui` serves them."""
    root = tmp_path_factory.mktemp("store")
    spec = hostile_spec()
    reference = profile(spec, ["a", "b"], 300, seed=0)
    current = profile(spec, ["a", *PAYLOADS], 300, seed=1)  # categories the reference never had
    result = drift_report(reference, current, spec, drift_share=0.5)
    assert result.verdict == "drift" and spec.columns.categorical[0] in result.drifted_columns
    (root / "monitoring" / "drift").mkdir(parents=True)
    (root / "monitoring" / "drift" / "2026-10-01.html").write_text(result.html, encoding="utf-8")
    (root / "cards" / "churn").mkdir(parents=True)
    (root / "cards" / "churn" / "v2.html").write_text(render_html(hostile_card(), {PAYLOADS[1]: b"\x89PNG"}))
    port = free_port()
    server = serve_reports(root, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture
def watched(browser, request):
    """A page that records dialogs, and the requests it makes anywhere but the report server."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    screenshot(page, request.node.name)
    context.close()


def assert_nothing_ran(page) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == []
    assert page.locator("img[src='x'], svg[onload], a[href^='javascript:']").count() == 0


def test_the_drift_report_shows_hostile_names_and_values_as_text(reports, watched):
    watched.goto(f"{reports}/monitoring/drift/2026-10-01.html")
    watched.get_by_text("Data Drift Summary").wait_for()  # Evidently drew its dashboard from the data
    # Open every column's details: Evidently draws each column's values in its plots there.
    toggles = watched.get_by_label("Detail panel visibility toggle")
    for i in range(toggles.count()):
        toggles.nth(i).click()
    watched.wait_for_timeout(1000)
    assert_nothing_ran(watched)
    text = watched.inner_text("body")
    # Shown as typed, in our table on top and in Evidently's own table, not dropped.
    assert text.count(f"plan {PAYLOADS[1]}") >= 2 and text.count(f"amount {PAYLOADS[0]}") >= 2
    assert f"flag {PAYLOADS[2]}" in text and "categories unseen in the reference" in text
    assert PAYLOADS[0] in text.split("Data Drift Summary")[1]  # a category value, in Evidently's part
    # Inside the charts too, markup from the data is drawn as the text it is: no link, bold or italics.
    charts = watched.locator(".js-plotly-plot .main-svg")
    assert charts.count() > 0
    assert watched.locator(".js-plotly-plot .main-svg a").count() == 0
    assert (
        watched.locator(".js-plotly-plot .main-svg tspan[style*='bold'], .main-svg tspan[style*='italic']").count() == 0
    )
    drawn = " ".join(charts.all_text_contents())
    assert "<b>bold</b>" in drawn and PLOTLY_MARKUP in drawn


def test_the_model_card_shows_hostile_fields_as_text(reports, watched):
    watched.goto(f"{reports}/cards/churn/v2.html")
    assert_nothing_ran(watched)
    text = watched.inner_text("body")
    assert watched.title() == f"Model card: churn {PAYLOADS[0]} v2"
    for payload in PAYLOADS[:6]:  # the separators are spaces in a rendered page
        assert payload in text, payload
    # Markdown from a field is text too: no link, image, emphasis or code made of it.
    assert watched.locator("a, em").count() == 0
    assert [code for code in watched.locator("code").all_inner_texts() if not code.startswith("model_card.")] == [
        "plots/"
    ]  # the card's own (and the params keys of fields not provided), none from a field
    assert watched.locator("img").count() == 1  # the plot the card inlines, nothing else


def test_the_report_server_lets_a_page_load_or_send_nothing(reports, watched):
    response = watched.goto(f"{reports}/monitoring/drift/2026-10-01.html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src" not in policy
    # A script on the page (had one run) could not send what it read anywhere.
    blocked = watched.evaluate(
        """() => new Promise(done => {
            document.addEventListener('securitypolicyviolation', e => done(e.effectiveDirective));
            fetch('http://127.0.0.1:9/steal').catch(() => {});
        })"""
    )
    assert blocked == "connect-src"
    missing = watched.goto(f"{reports}/%3Cscript%3E{MARK}('404')%3C/script%3E.html")
    assert missing.status == 404
    assert_nothing_ran(watched)
