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

from bertfit.metrics import expected_calibration_error

TEMPERATURE_BOUNDS = (0.05, 20.0)  # the search's range; a fit at either end found no minimum inside it


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The T in TEMPERATURE_BOUNDS minimising the mean negative log likelihood of softmax(logits / T)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(y_true))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y_true].mean())

    found = minimize_scalar(nll, bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded", options={"xatol": 1e-4})
    # On a loss that is flat towards an edge (every row right by a wide margin) the search stops anywhere
    # on the flat; an edge that does at least as well is the honest answer: no minimum inside the range.
    candidates = [float(found.x), *np.log(TEMPERATURE_BOUNDS)]
    return float(np.exp(min(candidates, key=lambda log_t: (nll(log_t), log_t == found.x))))


def plain_softmax(logits: np.ndarray) -> np.ndarray:
    """The uncalibrated probabilities: temperature 1."""
    return calibrated(logits, 1.0)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / T)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1).astype(np.float32)


def choose_temperature(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, float, float, str | None]:
    """The temperature to keep: (T, validation ECE before, after, why T was left at 1 or None).

    A fit at the search's edge found no minimum (a validation split too small or too easy to say);
    one that makes validation's calibration error worse is no better. Either way T stays 1.
    """
    temperature = fit_temperature(logits, y_true)
    before = expected_calibration_error(y_true, plain_softmax(logits))
    after = expected_calibration_error(y_true, calibrated(logits, temperature))
    low, high = TEMPERATURE_BOUNDS
    if temperature <= low * 1.01 or temperature >= high / 1.01:
        return 1.0, before, before, f"the fit ran to its bound ({temperature:.3g})"
    if after > before:
        return 1.0, before, before, f"it made validation ECE worse ({before:.4f} -> {after:.4f})"
    return temperature, before, after, None

