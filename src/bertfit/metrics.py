"""Classification metrics from predicted probabilities, with scikit-learn.

Accuracy, macro and weighted precision / recall / F1, ROC AUC (binary, or the macro mean of
one-vs-rest AUCs over the classes present), log loss and the confusion matrix. The inputs are
ids and probabilities; this module does not know about models or label names beyond ids.
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


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers people compare runs by (no confusion matrix)."""
    keys = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "auc", "loss")
    return {key: metrics[key] for key in keys if key in metrics}
