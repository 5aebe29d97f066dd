"""Temperature scaling (Guo et al., 2017): one number T, fitted on validation, that divides the logits.

Fine-tuned transformers are often over-confident: a 0.99 that is right 90% of the time. Dividing
the logits by T > 1 softens the probabilities without changing which class wins, so accuracy and
F1 stay the same and the probabilities become honest. T is fitted by minimising the negative log
likelihood of the validation labels; the test split reports the calibration error before and after.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the mean negative log likelihood of softmax(logits / T)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(y_true))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y_true].mean())

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def plain_softmax(logits: np.ndarray) -> np.ndarray:
    """The uncalibrated probabilities: temperature 1."""
    return calibrated(logits, 1.0)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / T)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1).astype(np.float32)
