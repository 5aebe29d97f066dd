"""What a trained model decides on validation, in order, before the test split is scored once.

Single-label: the temperature that calibrates its probabilities. Then, where the TF-IDF baseline
was fitted, whether to average it in (``bertfit.blend``): the weight with the best validation
score, taken only where the blend beats both the model alone and the baseline alone. Multi-label:
the per-label thresholds, tuned on the probabilities the model will answer with (the blend's, where
taken). Then the test split is scored once, by the same code path ``bertfit predict`` uses.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bertfit.blend import LinearBaseline, blended_logits, choose_weight
from bertfit.calibration import choose_temperature, plain_softmax
from bertfit.config import TrainConfig
from bertfit.data.cleaning import PreparedData
from bertfit.metrics import expected_calibration_error, headline, multilabel_metrics, tune_thresholds
from bertfit.model import TextClassifier
from bertfit.record import Calibration
from bertfit.training.baseline import joined_texts, probabilities

log = logging.getLogger(__name__)


def decide_then_score(classifier: TextClassifier, prepared: PreparedData, targets: dict[str, np.ndarray],
                      config: TrainConfig, progress: bool, validation_logits: np.ndarray | None = None,
                      fitted_baseline: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Decisions fitted on validation (temperature, the blend, thresholds), then the test split scored once.

    ``validation_logits``: the kept epoch's, as training scored them; else validation is scored here.
    ``fitted_baseline``: the TF-IDF baseline fitted on train, to be blended in where that pays (None: never).
    """
    record = classifier.record
    record.blend, classifier.baseline = None, None  # decided here (a reloaded model may have had one)
    if validation_logits is None or len(validation_logits) != len(prepared.validation):
        validation_logits = classifier.logits(prepared.validation["text"].tolist(), config.eval_batch_size,
                                              pairs=prepared.pairs("validation"))
    if not classifier.multi_label and config.calibrate:
        _fit_temperature(classifier, validation_logits, targets["validation"])
    if fitted_baseline is not None:
        validation_logits = blend_if_better(classifier, prepared, fitted_baseline, validation_logits,
                                            targets["validation"])
    if classifier.multi_label:
        record.thresholds = [float(t) for t in tune_thresholds(targets["validation"],
                                                               classifier.probabilities(validation_logits))]
        log.info("thresholds tuned on validation (for micro F1): %s",
                 dict(zip(classifier.labels.names[:8], record.thresholds[:8], strict=False)))
    test_logits = classifier.logits(prepared.test["text"].tolist(), config.eval_batch_size, progress,
                                    pairs=prepared.pairs("test"))
    test_metrics = classifier.score(test_logits, prepared.test["label"].tolist())
    if classifier.multi_label:  # what tuning the thresholds bought, on data that did not tune them
        fixed = multilabel_metrics(targets["test"], classifier.probabilities(test_logits), 0.5)
        test_metrics["at_threshold_0.5"] = headline(fixed)
    elif record.calibration is not None:
        if record.blend is None:  # a blend's logits are no model's: "before calibration" has no meaning there
            record.calibration.test_ece_before = expected_calibration_error(targets["test"],
                                                                            plain_softmax(test_logits))
        record.calibration.test_ece_after = test_metrics["ece"]
    return test_logits, test_metrics


def blend_if_better(classifier: TextClassifier, prepared: PreparedData, fitted_baseline: Any,
                    validation_logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Average the model's probabilities (calibrated, where a temperature was fitted) with the baseline's where
    that beats both on validation.

    When the blend is taken, the classifier carries the baseline (as arrays, saved beside it) and its
    record the weight, and the validation logits returned are the blend's. Else they come back as given.
    """
    baseline_proba = probabilities(fitted_baseline, joined_texts(prepared.validation), len(classifier.labels))
    model_proba = classifier.probabilities(validation_logits)
    weight, figures = choose_weight(model_proba, baseline_proba, targets, classifier.multi_label)
    metric = "f1_micro" if classifier.multi_label else "accuracy"
    shown = ", ".join(f"{name} {value:.4f}" for name, value in figures.items())
    if weight is None:
        log.info("blend with the TF-IDF baseline not taken: it does not beat both the model alone and the baseline "
                 "alone on validation %s (%s)", metric, shown)
        return validation_logits
    log.info("blend with the TF-IDF baseline taken: model weight %.2f; validation %s %s", weight, metric, shown)
    # Built only when taken: indexing its vocabulary takes a second where the n-grams run to 10^5.
    classifier.baseline = LinearBaseline.from_pipeline(fitted_baseline, len(classifier.labels))
    classifier.record.blend = {"weight": weight, "metric": metric,
                               "validation": {name: round(value, 4) for name, value in figures.items()}}
    return blended_logits(model_proba, baseline_proba, weight, classifier.multi_label, classifier.temperature)


def _fit_temperature(classifier: TextClassifier, logits: np.ndarray, targets: np.ndarray) -> None:
    """Temperature scaling on validation (single-label), or the reason it was kept at 1."""
    record = classifier.record
    temperature, before, after, fallback = choose_temperature(logits, targets)
    record.calibration = Calibration(temperature, validation_ece_before=before, validation_ece_after=after)
    if fallback:
        record.calibration.fallback = f"temperature kept at 1: {fallback}"
        log.warning("calibration: temperature kept at 1: %s", fallback)
    else:
        log.info("calibration: temperature %.3f fitted on validation (ECE %.4f -> %.4f)", temperature, before, after)
