"""Evaluation plots of a binary classifier as PNG bytes, for the Dagster UI and for MLflow.

Figures are built with matplotlib's object API on the Agg canvas, never pyplot: pyplot keeps a
global figure registry, which leaks memory in a long-running process and is not thread-safe.
The PNGs carry no software/version metadata, so the same inputs give byte-identical files and an
unchanged model does not produce "changed" artifacts.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from ml.evaluation import EvaluationError, binary_metrics, check_inputs

FIGSIZE = (4.5, 3.5)
DPI = 80


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)  # attaches itself to the figure; savefig then renders without pyplot
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # Software=None drops the matplotlib version stamp, the only varying chunk, so output is deterministic.
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _roc(y: np.ndarray, p: np.ndarray, m: Mapping[str, float]) -> bytes:
    figure, ax = _figure()
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"AUC = {m['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    # Where the chosen threshold sits on the curve.
    ax.plot([np.mean(p[y == 0] >= m["threshold"])], [m["recall"]], "o", label=f"threshold {m['threshold']:g}")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)
    return _png(figure)


def _precision_recall(y: np.ndarray, p: np.ndarray, m: Mapping[str, float]) -> bytes:
    figure, ax = _figure()
    precision, recall, _ = precision_recall_curve(y, p)
    ax.step(recall, precision, where="post", label=f"AP = {m['pr_auc']:.3f}")
    # A random ranking scores the base rate; the gap to this line is what the model adds.
    ax.axhline(m["positive_rate"], linestyle="--", color="grey", label=f"base rate = {m['positive_rate']:.3f}")
    ax.plot([m["recall"]], [m["precision"]], "o", label=f"threshold {m['threshold']:g}")
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="best", fontsize=8)
    return _png(figure)


def _calibration(y: np.ndarray, p: np.ndarray, m: Mapping[str, float]) -> bytes:
    figure, ax = _figure()
    # Quantile bins hold equal numbers of rows, so sparse score ranges do not give noisy points.
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.set(
        xlabel="Mean predicted probability",
        ylabel="Observed positive rate",
        title=f"Calibration (Brier = {m['brier']:.4f})",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper left", fontsize=8)
    return _png(figure)


def _feature_importance(importance: Mapping[str, float], top: int) -> bytes:
    figure, ax = _figure()
    ranked = sorted(importance.items(), key=lambda item: (-abs(item[1]), item[0]))[:top]
    if not ranked:
        # An empty mapping (e.g. a model without importances) must not break the evaluation run.
        ax.text(0.5, 0.5, "no importances", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title("Feature importance")
    else:
        names, values = zip(*reversed(ranked), strict=True)  # barh draws bottom-up: largest last = on top
        ax.barh(range(len(values)), values)
        ax.set_yticks(range(len(names)), [name if len(name) <= 40 else name[:39] + "…" for name in names], fontsize=7)
        ax.set_xlabel("importance")
        ax.set_title(f"Feature importance (top {len(ranked)} of {len(importance)})")
    return _png(figure)


def evaluation_plots(
    labels: Sequence | np.ndarray,
    scores: Sequence | np.ndarray,
    threshold: float,
    importance: Mapping[str, float],
    top: int = 15,
) -> dict[str, bytes]:
    """The four evaluation plots as PNG bytes, keyed roc, precision_recall, calibration, feature_importance."""
    if top < 1:
        raise EvaluationError(f"top must be at least 1, got {top}")
    # binary_metrics validates everything and gives the very numbers logged as metrics for the legends.
    m = binary_metrics(labels, scores, threshold)
    y, p = check_inputs(labels, scores)
    return {
        "roc": _roc(y, p, m),
        "precision_recall": _precision_recall(y, p, m),
        "calibration": _calibration(y, p, m),
        "feature_importance": _feature_importance(importance, top),
    }


def png_markdown(images: Mapping[str, bytes]) -> str:
    """Markdown embedding each PNG as a data URI under a `### name` heading (renders in MetadataValue.md)."""
    sections = []
    for name, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        sections.append(f"### {name}\n\n![{name}](data:image/png;base64,{encoded})")
    return "\n\n".join(sections) + "\n"
