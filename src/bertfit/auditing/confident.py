"""Confident learning: which rows' given labels the out-of-fold probabilities disagree with, and how strongly.

After Northcutt, Jiang and Chuang (2021), "Confident Learning: Estimating Uncertainty in Dataset
Labels". Inputs are probabilities from models that never saw the row (``proba``, rows x classes)
and the given labels (class ids). Each class gets a threshold, the mean probability of that class
over the rows labelled with it; a row *confidently* belongs to every class whose probability
reaches that class's threshold, and to the likeliest of those when there are several. Counting
(given label, confident class) pairs and calibrating each label's row to its count gives the
confident joint, an estimate of how many rows of each given label belong to each class.

How many labels are wrong is bracketed by two counts: the calibrated joint's off-diagonal, which
also counts clean rows of classes a model confuses, and the rows confidently in another class that
their own label does not win, which misses errors the models are unsure of. With four classes or
more the estimate is the mean of the two; with fewer, the calibrated count (the uncalibrated one
runs short there, as cleanlab's documentation also warns for its own). That many rows are flagged,
those whose given label is least likely (lowest self-confidence), unless their own label still
wins. bench/audit_rules.py sets the rules side by side.

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
    """Flag as many rows as :func:`error_count` estimates are wrong: those whose given label is least likely."""
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
    flagged[np.argsort(own, kind="stable")[:error_count(joint, elsewhere & (margin < 0))]] = True
    flagged &= margin < 0  # a row its own label still wins is not called wrong
    return Suspects(flagged, suggested, 1 - own, joint)


def error_count(joint: np.ndarray, elsewhere: np.ndarray) -> int:
    """How many given labels are wrong: the calibrated joint's off-diagonal (an overcount where clean classes
    are confusable) and the rows confidently elsewhere (an undercount where the models are unsure), averaged;
    the calibrated count alone under four classes."""
    calibrated = float(joint.sum() - np.trace(joint))
    if joint.shape[0] < 4:
        return int(calibrated)
    return int(round((calibrated + float(elsewhere.sum())) / 2))


def error_rate_interval(flagged: int, rows: int, z: float = 1.96) -> tuple[float, float, float]:
    """The flagged share and its Wilson 95% interval (the estimate of the label-error rate)."""
    if rows == 0:
        return 0.0, 0.0, 0.0
    p = flagged / rows
    centre = (p + z * z / (2 * rows)) / (1 + z * z / rows)
    half = z * math.sqrt(p * (1 - p) / rows + z * z / (4 * rows * rows)) / (1 + z * z / rows)
    return p, max(0.0, centre - half), min(1.0, centre + half)
