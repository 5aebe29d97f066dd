"""What a model's scored test rows say, as numbers: ``bertfit report`` draws and prints them.

Single-label: the headline metrics, the per-class table, the confusion matrix, ROC and
precision-recall curves (the positive class, or one-vs-rest for the classes with the most rows),
the reliability points and the most confident mistakes. Multi-label: the same per label, at the
model's thresholds. The inputs are probabilities and label names; this module knows nothing about
models, files or drawing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from bertfit.errors import DataError, ModelLoadError
from bertfit.labels import LabelSet
from bertfit.metrics import classification_metrics, headline, multilabel_metrics, reliability
from bertfit.record import ModelRecord

MAX_CURVES = 8  # one-vs-rest curves for the classes with the most test rows
MAX_MISTAKES = 20


@dataclass
class Curve:
    """One ROC or precision-recall curve: x and y points and the area under it."""

    name: str
    x: np.ndarray
    y: np.ndarray
    area: float


@dataclass
class TestAnalysis:
    """What the report says about the scored test rows: numbers only, no drawing."""

    task: str
    labels: list[str]
    rows: int
    metrics: dict[str, Any]  # headline metrics of this scoring
    per_class: dict[str, Any]  # scikit-learn classification_report(output_dict=True)
    confusion: np.ndarray | None  # (classes, classes) counts, rows = true; single-label only
    roc: list[Curve] = field(default_factory=list)
    pr: list[Curve] = field(default_factory=list)
    reliability: dict[str, Any] = field(default_factory=dict)
    mistakes: list[dict[str, Any]] = field(default_factory=list)


def analyse(record: ModelRecord, texts: list[str], labels: list[Any], proba: np.ndarray,
            pairs: list[str] | None = None) -> TestAnalysis:
    """The test analysis for a model's task: ``labels`` are names (lists of names for multi-label)."""
    names = list(record.labels)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(texts), len(names)):
        raise ModelLoadError(f"the model gave probabilities of shape {proba.shape} for {len(texts)} texts and "
                             f"{len(names)} labels in bertfit.json; the folder is damaged: retrain or restore it")
    if record.multi_label:
        thresholds = record.thresholds or [0.5] * len(names)
        return multi_label_analysis(names, texts, labels, proba, thresholds, pairs)
    return single_label_analysis(names, texts, labels, proba, pairs)


def single_label_analysis(names: list[str], texts: list[str], labels: list[str], proba: np.ndarray,
                          pairs: list[str] | None = None) -> TestAnalysis:
    """Confusion matrix, per-class table, curves and mistakes; ``proba`` is (rows, classes) softmax."""
    y_true = LabelSet(tuple(names)).encode(list(labels), where="the test rows", trained=True)
    y_pred = proba.argmax(axis=1)
    classes = np.arange(len(names))
    per_class = classification_report(y_true, y_pred, labels=classes, target_names=names, output_dict=True,
                                      zero_division=0)
    onehot = y_true[:, None] == classes[None, :]
    # Binary: the positive class, label id 1; else one-vs-rest for the classes with the most test rows.
    curves = _curves([1] if len(names) == 2 else _top_by_support(onehot), onehot, proba, names)
    confidence = proba[np.arange(len(y_pred)), y_pred]
    calibration = reliability(y_pred == y_true, confidence)  # 15 bins, as the ECE recorded at training
    wrong = np.flatnonzero(y_pred != y_true)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:MAX_MISTAKES]
    mistakes = [_row(texts, pairs, i, true=names[y_true[i]], predicted=names[y_pred[i]],
                     probability=float(confidence[i])) for i in worst]
    return TestAnalysis(
        task="single_label", labels=names, rows=len(y_true),
        metrics={**headline(classification_metrics(y_true, proba)), "ece": calibration["ece"]},
        per_class=per_class, confusion=confusion_matrix(y_true, y_pred, labels=classes),
        roc=curves[0], pr=curves[1], reliability=calibration, mistakes=mistakes,
    )


def multi_label_analysis(names: list[str], texts: list[str], labels: list[list[str]], proba: np.ndarray,
                         thresholds: list[float], pairs: list[str] | None = None) -> TestAnalysis:
    """Per-label table at the thresholds, per-label curves and mistakes; ``proba`` is (rows, labels) sigmoid."""
    if len(thresholds) != len(names):
        raise ModelLoadError(f"bertfit.json has {len(thresholds)} thresholds for {len(names)} labels; "
                             "the folder is damaged: retrain or restore it")
    truth = label_matrix(names, labels)
    predicted = proba >= np.asarray(thresholds, dtype=np.float64)[None, :]
    per_class = classification_report(truth, predicted, target_names=names, output_dict=True, zero_division=0)
    scored = multilabel_metrics(truth, proba, np.asarray(thresholds, dtype=np.float64))
    metrics = {**headline(scored), "precision_micro": scored["precision_micro"], "recall_micro": scored["recall_micro"],
               "rows": scored["rows"]}
    roc, pr = _curves(_top_by_support(truth), truth, proba, names)
    # Each wrong decision, by how sure the model was of it: p for a false positive, 1 - p for a miss.
    errors = predicted != truth
    sureness = np.where(errors, np.where(predicted, proba, 1 - proba), -1.0)
    worst_label = sureness.argmax(axis=1)
    wrong = np.flatnonzero(errors.any(axis=1))
    worst = wrong[np.argsort(-sureness[wrong, worst_label[wrong]], kind="stable")][:MAX_MISTAKES]
    mistakes = [
        _row(texts, pairs, i, true=[n for n, t in zip(names, truth[i], strict=True) if t],
             predicted=[n for n, p in zip(names, predicted[i], strict=True) if p],
             probability=float(proba[i, worst_label[i]]), label=names[worst_label[i]],
             error="false positive" if predicted[i, worst_label[i]] else "missed")
        for i in worst
    ]
    return TestAnalysis(
        task="multi_label", labels=names, rows=len(truth), metrics=metrics, per_class=per_class, confusion=None,
        roc=roc, pr=pr, reliability=reliability(truth.ravel(), proba.ravel()), mistakes=mistakes,
    )


def label_matrix(names: list[str], labels: list[list[str]]) -> np.ndarray:
    """(rows, labels) booleans from lists of names; an unknown name is an error naming it."""
    lookup = {name: k for k, name in enumerate(names)}
    truth = np.zeros((len(labels), len(names)), dtype=bool)
    for i, row in enumerate(labels):
        row = [row] if isinstance(row, str) else row
        unknown = [name for name in row if name not in lookup]
        if unknown:
            raise DataError(f"test row {i + 1} has label(s) {unknown[:5]} the model does not know "
                            f"(known: {names[:10]}); remove those rows or retrain with them")
        truth[i, [lookup[name] for name in row]] = True
    return truth


def _top_by_support(onehot: np.ndarray) -> list[int]:
    """Up to MAX_CURVES columns with the most positives, leaving out any a curve is undefined for."""
    support = onehot.sum(axis=0)
    drawable = [k for k in np.argsort(-support, kind="stable") if 0 < support[k] < len(onehot)]
    return [int(k) for k in drawable[:MAX_CURVES]]


def _curves(columns: list[int], onehot: np.ndarray, proba: np.ndarray, names: list[str]
            ) -> tuple[list[Curve], list[Curve]]:
    """ROC and precision-recall curves of the given columns, each one against the rest."""
    roc, pr = [], []
    for k in columns:
        truth, score = onehot[:, k], proba[:, k]
        if not 0 < truth.sum() < len(truth):
            continue
        fpr, tpr, _ = roc_curve(truth, score)
        precision, recall, _ = precision_recall_curve(truth, score)
        roc.append(Curve(names[k], fpr, tpr, float(roc_auc_score(truth, score))))
        pr.append(Curve(names[k], recall, precision, float(average_precision_score(truth, score))))
    return roc, pr


def _row(texts: list[str], pairs: list[str] | None, i: int, **fields: Any) -> dict[str, Any]:
    row = {"text": texts[i], **fields}
    if pairs is not None:
        row["text_pair"] = pairs[i]
    return row
