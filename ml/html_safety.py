"""Data inside the HTML pages the project writes, made inert.

Text goes into HTML through `html.escape`; JSON goes into a `<script>` block through `script_json`,
which escapes what could end the block or start markup (`<`, `>`, `&`) and the two line separators
that old JavaScript parsers read as line ends. `safe_evidently_page` applies it to Evidently's page,
whose data block embeds the report's JSON (column names and category values among it) as it is.
Plotly draws a small set of tags inside a chart's text (`<b>`, `<i>`, `<a href>`, `<br>`...), so every
text in the page's charts is written as HTML entities, which Plotly shows as the characters they stand
for (Evidently's own chart text uses no markup).
Text goes into Markdown (a model card, a summary in the Dagster UI) through `markdown_text`.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

# Each is a \u escape inside a JSON string, where alone these characters occur; JSON's structure has none.
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_UNSAFE = re.compile("[<>&\u2028\u2029]")


class PageLayoutError(ValueError):
    """A page is not laid out as expected, so its data cannot be made safe: it is not written."""


def script_json(value: Any) -> str:
    """`value` as JSON that can stand inside a `<script>` block and mean the same to JavaScript."""
    return _UNSAFE.sub(lambda m: _SCRIPT_UNSAFE[m.group()], json.dumps(value))


# Evidently 0.7's standalone page (evidently/legacy/utils/dashboard.py, file_html_template) opens its
# head with one data block: `var <id> = <json>; var additional_graphs_<id> = <json>;`.
_DATA_START = re.compile(r"<script>\s*var (metric_[0-9a-f]+) = ")


def _is_figure(value: dict) -> bool:
    return isinstance(value.get("data"), list) and isinstance(value.get("layout"), dict)


def _chart_text(value: Any, in_figure: bool = False) -> Any:
    """`value` with every string inside a Plotly figure (a dict with `data` and `layout`) entity-escaped."""
    if isinstance(value, dict):
        in_figure = in_figure or _is_figure(value)
        return {key: _chart_text(item, in_figure) for key, item in value.items()}
    if isinstance(value, list):
        return [_chart_text(item, in_figure) for item in value]
    if in_figure and isinstance(value, str):
        return html.escape(value, quote=False)
    return value


def safe_evidently_page(page: str) -> str:
    """Evidently's standalone page with its data block's JSON written again by `script_json`, the text
    of its charts as entities (`_chart_text`).

    The block is read with a JSON decoder, so a value holding `</script>` cannot move where the block
    seems to end; a page laid out otherwise (another Evidently version) raises instead of passing.
    """
    start = _DATA_START.search(page)
    if start is None:
        raise PageLayoutError("Evidently's page has no data block where expected (has its template changed?)")
    decoder = json.JSONDecoder()
    dashboard, at = decoder.raw_decode(page, start.end())
    middle = re.compile(rf";\s*var additional_graphs_{start.group(1)} = ").match(page, at)
    if middle is None:
        raise PageLayoutError("Evidently's data block does not go on with its additional graphs as expected")
    graphs, end = decoder.raw_decode(page, middle.end())
    close = re.compile(r";\s*</script>").match(page, end)
    if close is None:
        raise PageLayoutError("Evidently's data block does not end where its JSON does")
    block = (
        f"<script>\n    var {start.group(1)} = {script_json(_chart_text(dashboard))};\n"
        f"    var additional_graphs_{start.group(1)} = {script_json(_chart_text(graphs))};\n</script>"
    )
    return page[: start.start()] + block + page[close.end() :]


# What starts Markdown inline (emphasis, code, links, images, HTML, entities, table cells); `_` only at a
# word's edge (inside a word it is no emphasis, and names keep their underscores readable).
_INLINE = re.compile(r"[\\`*\[\]<>&!|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# What opens a block (heading, quote, list, rule, ordered list) when a value starts a line.
_BLOCK_MARK, _ORDERED = re.compile(r"^(\s*)([#>+=-])"), re.compile(r"^(\s*\d+)([.)])")


def markdown_text(value: Any) -> str:
    """A value from data or a person as literal Markdown text: no markup, link, HTML or new block."""
    text = _INLINE.sub(lambda m: "\\" + m.group(), " ".join(str(value).splitlines()))
    return _ORDERED.sub(r"\1\\\2", _BLOCK_MARK.sub(r"\1\\\2", text))
