"""JSON inside a <script> block, and Evidently's data block rewritten with it."""

import json

import pytest

from ml.html_safety import PageLayoutError, markdown_text, safe_evidently_page, script_json

HOSTILE = "</script><script>alert(1)</script> & <!-- \u2028\u2029"


def test_script_json_escapes_what_could_end_the_block_and_means_the_same():
    text = script_json({"value": HOSTILE, HOSTILE: [1.5, None]})
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == {"value": HOSTILE, HOSTILE: [1.5, None]}


def page(dashboard: str, graphs: str) -> str:
    return (
        "<!DOCTYPE html><html><head><style>x</style><script>\n    var metric_ab12 = "
        f"{dashboard};\n    var additional_graphs_metric_ab12 = {graphs};\n</script>\n</head>"
        '<body><div id="root_metric_ab12"></div><script>window.drawDashboard(metric_ab12)</script></body></html>'
    )


def test_the_data_block_is_read_as_json_and_written_back_escaped():
    raw = page(json.dumps({"name": HOSTILE, "x": float("nan")}), json.dumps({"g": HOSTILE}))
    safe = safe_evidently_page(raw)
    assert HOSTILE not in safe and safe.count("</script>") == 2  # the data block's and the drawing's
    head = safe.split("var metric_ab12 = ")[1].split(";\n")[0]
    assert json.loads(head)["name"] == HOSTILE and "NaN" in head
    assert safe.endswith(raw[raw.index("\n</head>") :])


def test_text_inside_a_chart_is_written_as_entities_and_other_text_is_kept():
    """Plotly draws <b>, <i> and <a href> inside a figure's text; the React tables around it escape by themselves."""
    markup = '<a href="http://x.example">x</a> <b>b</b> & co'
    figure = {"data": [{"x": [markup, "a"], "y": [1, 2]}], "layout": {"title": {"text": markup}}}
    raw = page(json.dumps({"widgets": [{"params": figure, "title": markup}]}), json.dumps({"g1": figure}))
    safe = safe_evidently_page(raw)
    dashboard = json.loads(safe.split("var metric_ab12 = ")[1].split(";\n")[0])
    graphs = json.loads(safe.split("var additional_graphs_metric_ab12 = ")[1].split(";\n")[0])
    escaped = '&lt;a href="http://x.example"&gt;x&lt;/a&gt; &lt;b&gt;b&lt;/b&gt; &amp; co'
    for drawn in (dashboard["widgets"][0]["params"], graphs["g1"]):
        assert drawn["data"][0]["x"] == [escaped, "a"] and drawn["layout"]["title"]["text"] == escaped
        assert drawn["data"][0]["y"] == [1, 2]  # numbers stay numbers
    assert dashboard["widgets"][0]["title"] == markup  # outside a chart: React shows it as text already


@pytest.mark.parametrize(
    "changed",
    [
        "<html><head></head><body>no data</body></html>",
        page('{"a": 1}', '{"b": 2}').replace("var additional_graphs_metric_ab12", "var graphs"),
        page('{"a": 1}', '{"b": 2}').replace(";\n</script>", "\n</script>"),
    ],
)
def test_a_page_laid_out_otherwise_is_refused(changed):
    with pytest.raises(PageLayoutError):
        safe_evidently_page(changed)


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("telco_churn", "<p>telco_churn</p>"),
        ("[x](javascript:alert(1)) ![i](http://e/p.png)", "<p>[x](javascript:alert(1)) ![i](http://e/p.png)</p>"),
        ("<b>b</b> &amp; *e* `c` _u_", "<p>&lt;b&gt;b&lt;/b&gt; &amp;amp; *e* `c` _u_</p>"),
        ("# heading", "<p># heading</p>"),
        ("1. item", "<p>1. item</p>"),
        ("- item\n> quote", "<p>- item &gt; quote</p>"),
    ],
)
def test_markdown_text_renders_as_the_text_itself(value, rendered):
    from markdown_it import MarkdownIt

    assert MarkdownIt("commonmark").render(markdown_text(value)).strip() == rendered
