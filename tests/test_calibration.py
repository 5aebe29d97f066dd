"""Temperature scaling: fitted on validation, and kept at 1 when the fit cannot be trusted."""

from __future__ import annotations

import numpy as np
import pytest

from bertfit.calibration import TEMPERATURE_BOUNDS, calibrated, choose_temperature, fit_temperature


def over_confident(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits right 80% of the time but scaled as if always right: a temperature above 1 helps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    guess = np.where(rng.random(rows) < 0.8, y, (y + 1) % 3)
    logits = rng.normal(size=(rows, 3))
    logits[np.arange(rows), guess] += 8.0
    return logits, y


def test_an_over_confident_model_gets_a_temperature_above_one_and_lower_ece():
    logits, y = over_confident()
    temperature, before, after, fallback = choose_temperature(logits, y)
    assert fallback is None
    assert temperature > 1.5
    assert after < before / 2
    assert np.array_equal(calibrated(logits, temperature).argmax(1), logits.argmax(1))  # same decisions


def test_a_fit_that_runs_to_its_bound_keeps_temperature_one():
    # Every row right by a wide margin: the likelihood keeps rising as T falls, to the search's edge.
    y = np.arange(60) % 3
    logits = np.full((60, 3), -5.0)
    logits[np.arange(60), y] = 5.0
    assert fit_temperature(logits, y) == pytest.approx(TEMPERATURE_BOUNDS[0], rel=0.02)
    temperature, before, after, fallback = choose_temperature(logits, y)
    assert temperature == 1.0 and after == before
    assert "bound" in fallback


def test_a_temperature_that_makes_validation_ece_worse_is_refused(monkeypatch):
    logits, y = over_confident(rows=90, seed=3)
    from bertfit import calibration

    monkeypatch.setattr(calibration, "fit_temperature", lambda logits, y: 0.2)  # sharpens an over-confident model
    temperature, before, after, fallback = choose_temperature(logits, y)
    assert temperature == 1.0 and after == before
    assert "worse" in fallback
