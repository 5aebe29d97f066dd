"""A linear baseline to put beside every transformer score: TF-IDF (word + character n-grams)
with logistic regression, fitted on the same training split in seconds.

Nobody should ship a large model that loses to a linear one without knowing. This module fits
and scores the baseline; it does not decide anything for the transformer.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline

from bertfit.labels import LabelSet
from bertfit.metrics import classification_metrics


def tfidf_logreg(seed: int = 42) -> Any:
    """Word 1-2-grams and character 2-5-grams (within word boundaries), sublinear TF, then logistic regression."""
    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, lowercase=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)),
    ])
    return make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000, random_state=seed))


def fit_and_score(
    train_texts: list[str], train_labels: list[str], test_texts: list[str], test_labels: list[str],
    labels: LabelSet, seed: int = 42,
) -> dict[str, Any]:
    """Fit on train, score test; metrics as in ``metrics.classification_metrics`` plus fit seconds."""
    started = time.perf_counter()
    model = tfidf_logreg(seed).fit(train_texts, labels.encode(train_labels, "the training split"))
    seconds = time.perf_counter() - started
    # Columns of predict_proba follow model.classes_; put them in label-id order (all classes).
    proba = np.zeros((len(test_texts), len(labels)))
    proba[:, model.classes_] = model.predict_proba(test_texts)
    metrics = classification_metrics(labels.encode(test_labels, "the test split"), proba)
    metrics["fit_seconds"] = round(seconds, 2)
    return metrics
