import base64
import re
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ml.evaluation import EvaluationError
from ml.plots import evaluation_plots, png_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEYS = {"roc", "precision_recall", "calibration", "feature_importance"}


def _holdout():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=300)
    scores = np.clip(0.35 * labels + rng.uniform(0, 0.65, size=300), 0, 1)
    importance = {f"feature_{i}": float(v) for i, v in enumerate(rng.normal(size=25))}
    return labels, scores, importance


def _size(png: bytes) -> tuple[int, int]:
    # The IHDR chunk follows the signature: 4-byte length, b"IHDR", then width and height.
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_four_distinct_small_pngs():
    labels, scores, importance = _holdout()
    images = evaluation_plots(labels, scores, 0.5, importance)
    assert set(images) == KEYS
    for png in images.values():
        assert png.startswith(PNG_SIGNATURE)
        width, height = _size(png)
        assert 150 < width < 600 and 150 < height < 500  # ~4.5x3.5 in at 80 dpi, trimmed by the tight bbox
    assert len(set(images.values())) == 4


def test_same_inputs_give_identical_bytes():
    labels, scores, importance = _holdout()
    first = evaluation_plots(labels, scores, 0.5, importance)
    second = evaluation_plots(list(labels), list(scores), 0.5, dict(reversed(importance.items())))
    assert first == second
    assert all(b"tEXtSoftware" not in png for png in first.values())  # no matplotlib version stamp


def test_plots_are_identical_when_drawn_in_threads():
    labels, scores, importance = _holdout()
    expected = evaluation_plots(labels, scores, 0.5, importance)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: evaluation_plots(labels, scores, 0.5, importance), range(4)))
    assert all(result == expected for result in results)


def test_threshold_and_top_change_the_pictures():
    labels, scores, importance = _holdout()
    base = evaluation_plots(labels, scores, 0.5, importance, top=15)
    other = evaluation_plots(labels, scores, 0.3, importance, top=5)
    assert other["roc"] != base["roc"]  # the threshold marker moved
    assert other["feature_importance"] != base["feature_importance"]
    assert other["calibration"] == base["calibration"]  # calibration does not depend on the threshold


def test_empty_importance_still_draws():
    labels, scores, _ = _holdout()
    images = evaluation_plots(labels, scores, 0.5, {})
    assert images["feature_importance"].startswith(PNG_SIGNATURE)


def test_bad_input_raises_evaluation_error():
    labels, scores, importance = _holdout()
    with pytest.raises(EvaluationError, match=re.escape("300 labels but 299 scores")):
        evaluation_plots(labels, scores[:-1], 0.5, importance)
    with pytest.raises(EvaluationError, match=re.escape("threshold must be in (0, 1), got 1")):
        evaluation_plots(labels, scores, 1.0, importance)
    with pytest.raises(EvaluationError, match=re.escape("top must be at least 1, got 0")):
        evaluation_plots(labels, scores, 0.5, importance, top=0)


def test_png_markdown_embeds_every_image():
    labels, scores, importance = _holdout()
    images = evaluation_plots(labels, scores, 0.5, importance)
    markdown = png_markdown(images)
    uris = re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert [name for name, _ in uris] == list(images)
    assert {name: base64.b64decode(data) for name, data in uris} == images
    for name in KEYS:
        assert f"### {name}\n" in markdown
