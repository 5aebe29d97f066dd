"""Classification metrics from predicted probabilities, with scikit-learn.

Single-label: accuracy, macro and weighted precision / recall / F1, ROC AUC (binary, or the macro
mean of one-vs-rest AUCs over the classes present), log loss and the confusion matrix.
Multi-label: micro and macro F1 / precision / recall at per-label thresholds, subset accuracy
(every label right), Hamming loss, macro ROC AUC, binary cross-entropy, per-label figures.
Calibration: expected calibration error. Thresholds: per-label cuts with the best micro F1 on validation.
The inputs are ids and probabilities; this module does not know about models or label names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """Metrics for single-label classification; ``proba`` is (rows, classes) and sums to 1 per row."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 only within ~1e-7
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    classes = np.arange(n_classes)
    result: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        # Macro over the classes present in either truth or prediction (scikit-learn's default).
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        result[f"precision_{average}"] = float(p)
        result[f"recall_{average}"] = float(r)
        result[f"f1_{average}"] = float(f)
    result["auc"] = roc_auc(y_true, proba)
    result["loss"] = float(log_loss(y_true, np.clip(proba, 1e-12, 1.0), labels=classes))
    result["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=classes).tolist()
    result["rows"] = int(len(y_true))
    return result


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    """Binary AUC of class 1, or the macro mean of one-vs-rest AUCs; None when undefined."""
    if proba.shape[1] == 2:
        if len(np.unique(y_true)) < 2:
            return None
        return float(roc_auc_score(y_true, proba[:, 1]))
    # One-vs-rest, over the classes that have both positives and negatives here: a class absent
    # from a small validation split has no AUC, and leaving it out is what "macro" can honestly mean.
    scores = [
        roc_auc_score(y_true == k, proba[:, k])
        for k in range(proba.shape[1])
        if 0 < (y_true == k).sum() < len(y_true)
    ]
    return float(np.mean(scores)) if scores else None


def multilabel_metrics(y_true: np.ndarray, proba: np.ndarray, thresholds: np.ndarray | float = 0.5) -> dict[str, Any]:
    """Metrics for multi-label classification; ``y_true`` and ``proba`` are (rows, labels)."""
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    y_pred = (proba >= np.asarray(thresholds)).astype(int)
    result: dict[str, Any] = {}
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        result[f"f1_{average}"] = float(f)
        result[f"precision_{average}"] = float(p)
        result[f"recall_{average}"] = float(r)
    result["subset_accuracy"] = float((y_pred == y_true).all(axis=1).mean())
    result["hamming_loss"] = float((y_pred != y_true).mean())
    present = [k for k in range(y_true.shape[1]) if 0 < y_true[:, k].sum() < len(y_true)]
    result["auc"] = float(np.mean([roc_auc_score(y_true[:, k], proba[:, k]) for k in present])) if present else None
    clipped = np.clip(proba, 1e-12, 1 - 1e-12)
    result["loss"] = float(-(y_true * np.log(clipped) + (1 - y_true) * np.log(1 - clipped)).mean())
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    result["per_label"] = [{"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                            "support": int(support[k])} for k in range(y_true.shape[1])]
    result["rows"] = int(len(y_true))
    return result


THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # the cuts a multi-label threshold is chosen from


def tune_thresholds(y_true: np.ndarray, proba: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-label probability cuts with the best micro F1 on these rows, the multi-label headline metric.

    First the one cut shared by every label with the best micro F1 (ties: nearest 0.5); then, label
    by label, the cut of that label alone that raises micro F1 most, the others held (ties: the shared
    cut). Choosing each label's cut for its own F1 instead overfits the rare labels' few validation
    rows and sets their cuts low, and the false positives that buys cost micro F1: on goemotions it
    was 2-3 points lower on test (bench/accuracy.py; README, Accuracy).
    """
    grid = THRESHOLD_GRID if grid is None else grid
    y_true = np.asarray(y_true).astype(bool)
    proba = np.asarray(proba, dtype=np.float64)
    # per label and cut: true positives and predicted positives, (labels, grid); a label at a time keeps memory small
    tp, called = np.zeros((y_true.shape[1], len(grid))), np.zeros((y_true.shape[1], len(grid)))
    for k in range(y_true.shape[1]):
        predicted = proba[:, k][:, None] >= grid[None, :]
        tp[k], called[k] = (predicted & y_true[:, k][:, None]).sum(axis=0), predicted.sum(axis=0)
    positives = float(y_true.sum())

    def micro_f1(tp_total: np.ndarray, called_total: np.ndarray) -> np.ndarray:
        return 2 * tp_total / np.maximum(called_total + positives, 1)

    shared = micro_f1(tp.sum(axis=0), called.sum(axis=0))
    best = np.flatnonzero(shared == shared.max())
    cut = best[np.argmin(np.abs(grid[best] - 0.5))]
    chosen = np.full(y_true.shape[1], cut)
    for k in range(y_true.shape[1]):
        rows = np.arange(len(chosen)) != k
        others_tp, others_called = tp[rows, chosen[rows]].sum(), called[rows, chosen[rows]].sum()
        scores = micro_f1(others_tp + tp[k], others_called + called[k])
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        chosen[k] = best[np.argmin(np.abs(best - cut))]
    return grid[chosen]


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """How far confidence is from accuracy: the row-weighted mean |accuracy - confidence| over equal-width bins."""
    proba = np.asarray(proba, dtype=np.float64)
    return reliability(proba.argmax(axis=1) == np.asarray(y_true), proba.max(axis=1), bins).get("ece", 0.0)


def reliability(outcome: np.ndarray, probability: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Reliability diagram points per non-empty bin of equal width (mean probability, observed rate, rows)
    and the expected calibration error (the row-weighted mean gap between the two)."""
    outcome, probability = np.asarray(outcome, dtype=np.float64), np.asarray(probability, dtype=np.float64)
    if len(outcome) == 0:
        return {}
    bin_of = np.minimum((probability * bins).astype(int), bins - 1)
    counts = np.bincount(bin_of, minlength=bins)
    used = counts > 0
    predicted = np.bincount(bin_of, weights=probability, minlength=bins)[used] / counts[used]
    observed = np.bincount(bin_of, weights=outcome, minlength=bins)[used] / counts[used]
    ece = float(np.sum(np.abs(observed - predicted) * counts[used]) / len(outcome))
    return {"predicted": predicted, "observed": observed, "counts": counts[used], "ece": ece}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers people compare runs by (no confusion matrix, no per-label table)."""
    keys = ("accuracy", "subset_accuracy", "f1_micro", "f1_macro", "precision_macro", "recall_macro", "auc", "ece",
            "loss")
    return {key: metrics[key] for key in keys if key in metrics}


def main_metric(metrics: dict[str, Any]) -> tuple[str, float]:
    """The figure that names a run: accuracy (single-label) or micro F1 (multi-label)."""
    return ("accuracy", metrics["accuracy"]) if "accuracy" in metrics else ("f1_micro", metrics["f1_micro"])
