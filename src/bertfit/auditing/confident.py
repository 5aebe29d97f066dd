"""Confident learning: which rows' given labels the out-of-fold probabilities disagree with, and how strongly.

After Northcutt, Jiang and Chuang (2021), "Confident Learning: Estimating Uncertainty in Dataset
Labels". Inputs are probabilities from models that never saw the row (``proba``, rows x classes)
and the given labels (class ids). Each class gets a threshold, the mean probability of that class
over the rows labelled with it; a row *confidently* belongs to every class whose probability
reaches that class's threshold, and to the likeliest of those when there are several. Counting
(given label, confident class) pairs and calibrating each label's row to its count gives the
confident joint, an estimate of how many rows of each given label belong to each class. Its
off-diagonal sum is the number of errors; that many rows are flagged, those whose given label is
least likely (lowest self-confidence), unless their own label still wins. From the same
out-of-fold probabilities with 10% of the training labels flipped (bench/audit.py --keep), F1:

    rule                                           sms-spam  banking77  trec   trec (finetune)
    this one                                       0.922     0.926      0.800  0.823
    as many as rows confidently elsewhere          0.844     0.884      0.846  0.855
    each cell pruned by its pair's margin          0.896     0.820      0.779  0.808
    (the last is cleanlab's default, prune_by_noise_rate)

Pure numpy; no model, no data reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Suspects:
    """What confident learning says about each row."""

    flagged: np.ndarray  # (rows,) bool: the given label is probably wrong
    suggested: np.ndarray  # (rows,) class id: the confident class (or the likeliest other one)
    score: np.ndarray  # (rows,) in [0, 1]: 1 - the given label's probability (its self-confidence), the ranking
    joint: np.ndarray  # (classes, classes) confident joint: rows of given label i confidently in class j


def thresholds(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class: the mean probability of that class over the rows given that label (classes without rows: 1)."""
    classes = proba.shape[1]
    out = np.ones(classes)
    for j in range(classes):
        mine = labels == j
        if mine.any():
            out[j] = proba[mine, j].mean()
    return out


def confident_classes(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: the likeliest class among those at or above their threshold; -1 when none is."""
    above = proba >= thresholds(proba, labels)[None, :] - 1e-12
    masked = np.where(above, proba, -1.0)
    best = masked.argmax(axis=1)
    return np.where(above.any(axis=1), best, -1)


def confident_joint(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(given, confident) counts, calibrated so each row of the joint sums to its label's count."""
    classes = proba.shape[1]
    confident = confident_classes(proba, labels)
    joint = np.zeros((classes, classes))
    counted = confident >= 0
    np.add.at(joint, (labels[counted], confident[counted]), 1)
    given = np.bincount(labels, minlength=classes)
    sums = joint.sum(axis=1, keepdims=True)
    return round_keeping_row_totals(np.where(sums > 0, joint / np.maximum(sums, 1) * given[:, None], 0.0))


def round_keeping_row_totals(counts: np.ndarray) -> np.ndarray:
    """Whole counts whose rows keep their (rounded) totals: floors, then the largest remainders get one more.

    Plain rounding loses the errors of data with many classes: 900 flips over 77 x 76 cells leave
    most cells at a fraction of a row, which rounds to none.
    """
    floors = np.floor(counts)
    short = np.rint(counts.sum(axis=1)) - floors.sum(axis=1)
    order = np.argsort(-(counts - floors), axis=1, kind="stable")
    out = floors.copy()
    for row, missing in enumerate(short.astype(int)):
        out[row, order[row, :max(missing, 0)]] += 1
    return out


def normalised_margin(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Given label's probability minus the best other class's: -1 (surely wrong) to 1 (surely right)."""
    rows = np.arange(len(labels))
    own = proba[rows, labels]
    others = proba.copy()
    others[rows, labels] = -np.inf
    return own - others.max(axis=1)


def find_suspects(proba: np.ndarray, labels: np.ndarray) -> Suspects:
    """Flag as many rows as the confident joint counts off its diagonal: those whose given label is least likely."""
    proba = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    joint = confident_joint(proba, labels)
    margin = normalised_margin(proba, labels)
    others = proba.copy()
    others[rows, labels] = -np.inf
    suggested = others.argmax(axis=1)
    confident = confident_classes(proba, labels)
    elsewhere = (confident >= 0) & (confident != labels)
    suggested = np.where(elsewhere, confident, suggested)
    own = proba[rows, labels]
    flagged = np.zeros(len(labels), dtype=bool)
    errors = int(joint.sum() - np.trace(joint))  # the calibrated joint's estimate of how many labels are wrong
    flagged[np.argsort(own, kind="stable")[:errors]] = True
    flagged &= margin < 0  # a row its own label still wins is not called wrong
    return Suspects(flagged, suggested, 1 - own, joint)


def error_rate_interval(flagged: int, rows: int, z: float = 1.96) -> tuple[float, float, float]:
    """The flagged share and its Wilson 95% interval (the estimate of the label-error rate)."""
    if rows == 0:
        return 0.0, 0.0, 0.0
    p = flagged / rows
    centre = (p + z * z / (2 * rows)) / (1 + z * z / rows)
    half = z * math.sqrt(p * (1 - p) / rows + z * z / (4 * rows * rows)) / (1 + z * z / rows)
    return p, max(0.0, centre - half), min(1.0, centre + half)
