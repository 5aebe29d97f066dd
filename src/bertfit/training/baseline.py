"""A linear baseline to put beside every transformer score: TF-IDF (word + character n-grams)
with logistic regression, fitted on the same training split in seconds.

Nobody should ship a large model that loses to a linear one without knowing. This module fits
and scores the baseline and says how the transformer compares; it does not decide anything for the transformer.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, make_pipeline

from bertfit.blend import joined
from bertfit.metrics import classification_metrics, main_metric, multilabel_metrics, tune_thresholds

log = logging.getLogger(__name__)


def tfidf_logreg(seed: int = 42, multi_label: bool = False) -> Any:
    """Word 1-2-grams and character 2-5-grams (within word boundaries), sublinear TF, then logistic regression
    (one per label for multi-label, on features computed once)."""
    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, lowercase=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)),
    ])
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    return make_pipeline(features, OneVsRestClassifier(classifier) if multi_label else classifier)


def fit_and_score(prepared: Any, seed: int = 42) -> dict[str, Any]:
    """Fit on the training split, score the test split; metrics as the transformer's, plus fit seconds."""
    return fitted_and_scored(prepared, seed)[1]


def fitted_and_scored(prepared: Any, seed: int = 42) -> tuple[Any, dict[str, Any]]:
    """The baseline fitted on the training split, and its test metrics (as the transformer's, plus fit seconds).

    Sentence pairs are joined into one text (``a [SEP] b``). Multi-label fits one logistic regression
    per label, with per-label thresholds tuned on validation (for micro F1) as the transformer's are.
    """
    started = time.perf_counter()
    texts = {name: joined_texts(frame) for name, frame in prepared.splits().items()}
    labels = prepared.labels
    if prepared.multi_label:
        y_train = labels.encode_multi(prepared.train["label"].tolist(), "the training split")
        with warnings.catch_warnings():  # a label on every training row, or on none: sklearn predicts it constant
            warnings.filterwarnings("ignore", "Label .* is present in all training examples")
            model = tfidf_logreg(seed, multi_label=True).fit(texts["train"], y_train)
        thresholds = tune_thresholds(labels.encode_multi(prepared.validation["label"].tolist()),
                                     model.predict_proba(texts["validation"]))
        y_test = labels.encode_multi(prepared.test["label"].tolist(), "the test split")
        metrics = multilabel_metrics(y_test, model.predict_proba(texts["test"]), thresholds)
        metrics.pop("per_label")
    else:
        model = tfidf_logreg(seed).fit(texts["train"], labels.encode(prepared.train["label"].tolist()))
        metrics = classification_metrics(labels.encode(prepared.test["label"].tolist(), "the test split"),
                                         probabilities(model, texts["test"], len(labels)))
    metrics["fit_seconds"] = round(time.perf_counter() - started, 2)
    return model, metrics


def probabilities(model: Any, texts: list[str], classes: int) -> np.ndarray:
    """The fitted baseline's probabilities, (len(texts), classes), columns in label-id order: a single-label fit
    orders them by the classes its training rows hold (``classes_``), and a class they lack gets 0."""
    proba = model.predict_proba(texts)
    if hasattr(model[-1], "estimators_"):  # one regression per label: a column per label already
        return proba
    full = np.zeros((len(texts), classes))
    full[:, model[-1].classes_] = proba
    return full


def baseline_record(prepared: Any, seed: int = 42) -> tuple[dict[str, Any] | None, Any]:
    """What ``bertfit.json`` keeps under "baseline" (the model's name and its test metrics), and the fitted baseline.

    (None, None), with a warning, where the n-grams find nothing to count (texts of emoji or symbols
    alone): the baseline is a comparison, and a run is not lost for want of it.
    """
    try:
        model, metrics = fitted_and_scored(prepared, seed=seed)
    except ValueError as err:
        if "empty vocabulary" not in str(err):
            raise
        log.warning("no TF-IDF baseline beside this model: its word n-grams found no words in the training "
                    "texts (%s)", err)
        return None, None
    return {"name": "tfidf-logreg", "description": "TF-IDF word 1-2 + char 2-5 grams, logistic regression",
            "test": metrics}, model


def compare_with_baseline(model_metrics: dict[str, Any], baseline_metrics: dict[str, Any]) -> None:
    name, ours = main_metric(model_metrics)
    theirs = baseline_metrics[name]
    log.info("test %s: this model %.4f, TF-IDF + logistic regression baseline %.4f (%+.1f points)", name, ours,
             theirs, 100 * (ours - theirs))
    if theirs > ours:
        log.warning("the TF-IDF + logistic regression baseline beats this model on test %s (%.4f against %.4f): "
                    "a linear model on word and character n-grams does better here, in seconds; consider "
                    "shipping it, or training longer, a larger model, or more data", name, theirs, ours)


def joined_texts(frame: Any) -> list[str]:
    """A split's texts as the baseline reads them: a sentence pair joined into one text, ``a [SEP] b``."""
    return joined(frame["text"].tolist(), frame["text_pair"].tolist() if "text_pair" in frame else None)
