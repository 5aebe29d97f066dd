"""The report's pictures: matplotlib on its Agg canvas (no pyplot, no display), each returned as an
``<img>`` tag with the PNG inlined as base64. Training curves, confusion matrix, ROC and
precision-recall curves, reliability diagram. Matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any

import numpy as np

from bertfit.errors import BertfitError
from bertfit.reporting.analysis import Curve

NOT_RECORDED = "not recorded"


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise BertfitError("the report draws with matplotlib, which is not installed; "
                           "pip install 'matplotlib>=3.7'") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _img(figure: Any, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def plot_training(history: list[dict[str, Any]], best_epoch: int | None, metric: str, metric_name: str) -> str:
    """Training and validation loss, and the validation metric, per epoch; the best epoch dashed."""
    figure = _figure(10, 3.4)
    loss_ax, metric_ax = figure.subplots(1, 2)
    epochs = [h.get("epoch") for h in history]
    validation = [h.get("validation") or {} for h in history]
    _line(loss_ax, epochs, [h.get("train_loss") for h in history], "training loss")
    _line(loss_ax, epochs, [v.get("loss") for v in validation], "validation loss")
    if not _line(metric_ax, epochs, [v.get(metric) for v in validation], f"validation {metric_name}"):
        metric_ax.text(0.5, 0.5, NOT_RECORDED, ha="center", va="center", transform=metric_ax.transAxes)
    for ax, title in ((loss_ax, "loss"), (metric_ax, metric_name)):
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        ax.set(xlabel="epoch", title=title)
        ax.legend(fontsize="small")
    return _img(figure, f"training and validation loss, and validation {metric_name}, per epoch")


def _line(ax: Any, xs: list[Any], ys: list[Any], label: str) -> bool:
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
    if points:
        ax.plot(*zip(*points, strict=True), marker="o", label=label)
    return bool(points)


def plot_confusion(counts: np.ndarray, names: list[str]) -> str:
    """Counts and the share of each true class (rows sum to 1), side by side."""
    n = len(names)
    size = min(max(4.0, 0.45 * n + 2), 12.0)
    figure = _figure(2 * size, size)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    for ax, values, title, form in zip(figure.subplots(1, 2), (counts, rates),
                                       ("counts", "share of each true class"), ("{:d}", "{:.2f}"), strict=True):
        ax.imshow(values, cmap="Blues", vmin=0)
        ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(n), yticks=range(n))
        ax.set_xticklabels(names, rotation=90, fontsize=8 if n <= 30 else 5)
        ax.set_yticklabels(names, fontsize=8 if n <= 30 else 5)
        if n <= 20:  # numbers in the cells while they are still readable
            for (i, j), value in np.ndenumerate(values):
                ax.text(j, i, form.format(value), ha="center", va="center", fontsize=8,
                        color="white" if value > values.max() / 2 else "black")
    return _img(figure, "confusion matrix: counts and share of each true class")


def plot_curves(roc: list[Curve], pr: list[Curve]) -> str:
    """ROC and precision-recall curves, one line per class (or label)."""
    figure = _figure(10, 4.2)
    roc_ax, pr_ax = figure.subplots(1, 2)
    for curve in roc:
        roc_ax.plot(curve.x, curve.y, label=f"{curve.name} (AUC {curve.area:.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for curve in pr:
        pr_ax.plot(curve.x, curve.y, drawstyle="steps-post", label=f"{curve.name} (AP {curve.area:.3f})")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize="small")
    return _img(figure, "ROC and precision-recall curves")


def plot_reliability(points: dict[str, Any], task: str) -> str:
    """Observed rate against mean predicted probability per bin; the diagonal is perfect calibration."""
    figure = _figure(5.5, 4.5)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    ax.plot(points["predicted"], points["observed"], marker="o", label=f"this model (ECE {points['ece']:.3f})")
    single = task != "multi_label"
    ax.set(xlabel="confidence in the predicted class" if single else "predicted probability of a label",
           ylabel="share correct" if single else "share of rows with the label", title="reliability",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize="small")
    return _img(figure, "reliability diagram")


def plot_trials(trials: list[dict[str, Any]], default: float | None) -> str:
    """A tuning study over time: each trial's validation score in the order run, the best so far, the default."""
    figure = _figure(7, 3.2)
    ax = figure.add_subplot()
    done = [(i, t["validation"]) for i, t in enumerate(trials)
            if t["state"] == "complete" and t["validation"] is not None]
    stopped = [i for i, t in enumerate(trials) if t["state"] == "pruned"]
    if done:
        xs, ys = zip(*done, strict=True)
        ax.scatter(xs, ys, s=18, label="trial (validation)")
        best = np.maximum.accumulate(ys)
        ax.step(xs, best, where="post", label="best so far")
    if stopped:
        low = min((y for _, y in done), default=0.0)
        ax.scatter(stopped, [low] * len(stopped), marker="x", color="grey", label="pruned or stopped")
    if default is not None:
        ax.axhline(default, linestyle="--", color="black", linewidth=1, label="default recipe")
    ax.set_xlabel("trial, in the order run")
    ax.set_ylabel("validation score")
    ax.legend(loc="lower right", fontsize=8)
    return _img(figure, "validation score per trial")
