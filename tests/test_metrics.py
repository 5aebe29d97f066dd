"""Metrics: accuracy, AUC (binary and macro one-vs-rest over present classes), loss, confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bertfit.metrics import classification_metrics, expected_calibration_error, headline, reliability, roc_auc


def pairwise_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """AUC by counting pairs: the share of (positive, negative) pairs ranked right, ties counting half."""
    pos, neg = scores[positive], scores[~positive]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


def random_proba(rows: int, classes: int, seed: int) -> np.ndarray:
    raw = np.random.default_rng(seed).random((rows, classes))
    return raw / raw.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_perfect_predictions(n_classes):
    y = np.arange(20) % n_classes
    proba = np.full((20, n_classes), 0.1 / (n_classes - 1))
    proba[np.arange(20), y] = 0.9
    metrics = classification_metrics(y, proba)
    assert metrics["accuracy"] == 1.0
    assert metrics["auc"] == 1.0
    assert metrics["f1_macro"] == metrics["precision_macro"] == metrics["recall_macro"] == 1.0
    assert metrics["confusion_matrix"] == np.diag(np.bincount(y)).tolist()
    assert metrics["loss"] == pytest.approx(-math.log(0.9))
    assert metrics["rows"] == 20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_auc_is_sklearns_on_class_one(seed):
    proba = random_proba(40, 2, seed)
    y = np.random.default_rng(seed + 100).integers(0, 2, 40)
    expected = roc_auc_score(y, proba[:, 1])
    assert classification_metrics(y, proba)["auc"] == pytest.approx(expected)
    assert roc_auc(y, proba) == pytest.approx(pairwise_auc(y == 1, proba[:, 1]))


def test_accuracy_and_macro_scores_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.2 / 3
    metrics = classification_metrics(y, proba)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # recall per class: 1/2, 2/2, 1/2; precision per class: 1/2, 2/3, 1/1
    assert metrics["recall_macro"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert metrics["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_multiclass_auc_with_a_class_missing_from_truth_is_the_mean_over_present_classes():
    y = np.array([0, 0, 1, 1, 0, 1])  # class 2 never occurs
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.4, 0.3],
                      [0.5, 0.2, 0.3], [0.7, 0.1, 0.2], [0.1, 0.1, 0.8]])
    auc = classification_metrics(y, proba)["auc"]
    expected = (pairwise_auc(y == 0, proba[:, 0]) + pairwise_auc(y == 1, proba[:, 1])) / 2
    assert auc == pytest.approx(expected)
    assert auc == pytest.approx((7 / 9 + 3.5 / 9) / 2)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_auc_is_none_when_truth_has_one_class(n_classes):
    y = np.zeros(5, dtype=int)
    metrics = classification_metrics(y, random_proba(5, n_classes, 0))
    assert metrics["auc"] is None
    assert math.isfinite(metrics["loss"])


def test_confusion_matrix_is_square_even_for_classes_never_seen():
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.7, 0.2, 0.05, 0.05], [0.2, 0.7, 0.05, 0.05], [0.2, 0.7, 0.05, 0.05],
                      [0.6, 0.3, 0.05, 0.05]])
    matrix = classification_metrics(y, proba)["confusion_matrix"]
    assert matrix == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_loss_is_finite_with_zero_probabilities():
    y = np.array([0, 1, 0])
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # the last row is confidently wrong
    loss = classification_metrics(y, proba)["loss"]
    assert math.isfinite(loss)
    assert loss == pytest.approx(-math.log(1e-12) / 3, rel=1e-6)


def test_headline_keeps_the_comparable_numbers_only():
    metrics = classification_metrics(np.array([0, 1, 1]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]))
    assert set(metrics) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                            "recall_weighted", "f1_weighted", "auc", "loss", "confusion_matrix", "rows"}
    top = headline(metrics)
    assert list(top) == ["accuracy", "f1_macro", "precision_macro", "recall_macro", "auc", "loss"]
    assert top["auc"] == 1.0 and top["accuracy"] == pytest.approx(2 / 3)
    assert headline({"accuracy": 0.5}) == {"accuracy": 0.5}


def test_reliability_points_and_expected_calibration_error():
    probability = np.array([0.05] * 10 + [0.95] * 10)
    outcome = np.array([0] * 10 + [1] * 9 + [0])
    points = reliability(outcome, probability, bins=10)
    assert points["predicted"].tolist() == pytest.approx([0.05, 0.95])
    assert points["observed"].tolist() == pytest.approx([0.0, 0.9])
    assert points["counts"].tolist() == [10, 10]
    assert points["ece"] == pytest.approx(0.05)


def test_expected_calibration_error_is_the_row_weighted_gap_per_confidence_bin():
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(4), size=500)
    y = rng.integers(0, 4, size=500)
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == y
    which = np.minimum((confidence * 15).astype(int), 14)
    by_hand = sum((which == b).mean() * abs(correct[which == b].mean() - confidence[which == b].mean())
                  for b in range(15) if (which == b).any())
    assert expected_calibration_error(y, proba) == pytest.approx(by_hand)
    assert expected_calibration_error(np.array([], dtype=int), np.zeros((0, 4))) == 0.0
