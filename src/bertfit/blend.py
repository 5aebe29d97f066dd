"""The TF-IDF baseline kept beside a model, and its blend with the transformer.

Where classes have few rows (multi-label data, 77 intents) the linear baseline knows things the
transformer has not learned yet, and averaging the two was worth about a point (``bench/blend.py``).
Training weighs them, p = w * model + (1 - w) * baseline (the model's probabilities calibrated
first), with w chosen on validation (:func:`choose_weight`: accuracy, or micro F1 with thresholds
tuned again for each w), and keeps the blend only where it beats both there. The baseline is then
saved in the folder as plain arrays, never pickle: its vocabularies and settings in
``baseline.json``, its idf and logistic-regression weights in ``baseline.safetensors``.
:class:`LinearBaseline` rebuilds the probabilities from those with the same n-gram analyzers (a
softmax over the classes, or a sigmoid per label); :func:`blended_logits` turns the average back
into logits, so everything downstream of ``TextClassifier.logits`` (thresholds, records, metrics,
the server, the export's check) reads the blend without knowing of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BASELINE_JSON = "baseline.json"
BASELINE_WEIGHTS = "baseline.safetensors"
BASELINE_FILES = (BASELINE_JSON, BASELINE_WEIGHTS)
WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)  # the model's weight; 1 - w is the baseline's
FORMAT = 1
# What the analyzers need to make the same n-grams from a text (TfidfVectorizer's parameters).
ANALYZER_SETTINGS = ("analyzer", "ngram_range", "lowercase", "token_pattern", "strip_accents", "binary")
CONSTANT_LOGIT = 40.0  # a label the training split never varies: probability 0 or 1, as sklearn predicts it
EDGE = 1e-7  # blended probabilities are kept this far from 0 and 1, so their logits stay finite


@dataclass
class LinearBaseline:
    """TF-IDF features (one part per vectorizer, each L2-normalised), then logistic regression: one per label
    (multi-label: a sigmoid each), one multinomial over the classes (a softmax), or one binary (two classes)."""

    parts: list[dict[str, Any]]  # per vectorizer: its analyzer settings, sublinear_tf, and its terms in column order
    idf: list[np.ndarray]
    coef: np.ndarray  # (rows, features): a row per label, per class, or one row for two classes
    intercept: np.ndarray  # (rows,)
    kind: str = "sigmoid"  # sigmoid: per label | softmax: over the classes | binary: one row for two classes

    @classmethod
    def from_pipeline(cls, pipeline: Any, classes: int) -> LinearBaseline:
        """From ``training.baseline.tfidf_logreg`` fitted on ``classes`` labels: its arrays, nothing else."""
        union, classifier = pipeline[0], pipeline[-1]
        parts, idf = [], []
        for _, vectorizer in union.transformer_list:
            if vectorizer.norm != "l2" or not vectorizer.use_idf:
                raise ValueError("only L2-normalised TF-IDF with idf can be kept as arrays")
            terms = [""] * len(vectorizer.vocabulary_)
            for term, column in vectorizer.vocabulary_.items():
                terms[column] = term
            settings = {name: getattr(vectorizer, name) for name in ANALYZER_SETTINGS}
            settings["ngram_range"] = list(settings["ngram_range"])
            parts.append({**settings, "sublinear_tf": bool(vectorizer.sublinear_tf), "terms": terms})
            idf.append(np.asarray(vectorizer.idf_, dtype=np.float32))
        if not hasattr(classifier, "estimators_"):
            return cls._single_label(parts, idf, classifier, classes)
        width = sum(len(part["terms"]) for part in parts)
        coef = np.zeros((len(classifier.estimators_), width), dtype=np.float32)
        intercept = np.zeros(len(classifier.estimators_), dtype=np.float32)
        for label, estimator in enumerate(classifier.estimators_):
            if hasattr(estimator, "coef_"):
                coef[label], intercept[label] = estimator.coef_[0], estimator.intercept_[0]
            else:  # sklearn's constant predictor: every training row had the label, or none did
                intercept[label] = CONSTANT_LOGIT if float(np.ravel(estimator.y_)[0]) > 0.5 else -CONSTANT_LOGIT
        return cls(parts, idf, coef, intercept)

    @classmethod
    def _single_label(cls, parts: list[dict[str, Any]], idf: list[np.ndarray], classifier: Any,
                      classes: int) -> LinearBaseline:
        """One logistic regression over the classes the training rows hold (``classes_``, label ids); a class
        they lack gets probability 0, as the baseline's own scoring gives it."""
        seen, coef, intercept = list(classifier.classes_), classifier.coef_, classifier.intercept_
        if seen == list(range(classes)) and classes == 2:
            return cls(parts, idf, coef.astype(np.float32), intercept.astype(np.float32), "binary")
        rows = np.zeros((classes, coef.shape[1]), dtype=np.float32)
        offsets = np.full(classes, -CONSTANT_LOGIT, dtype=np.float32)
        if len(seen) == 2:  # a binary fit among more classes: softmax over (0, z) is (1 - sigmoid(z), sigmoid(z))
            offsets[seen[0]], rows[seen[1]], offsets[seen[1]] = 0.0, coef[0], intercept[0]
        else:
            rows[seen], offsets[seen] = coef, intercept
        return cls(parts, idf, rows, offsets, "softmax")

    def __post_init__(self) -> None:
        """The counters are built once (a vocabulary of 10^5 terms takes a while to index), not per call:
        with their vocabulary fixed they only read, so the server's threads may share them."""
        from scipy import sparse
        from sklearn.feature_extraction.text import CountVectorizer

        self._counters = []
        for part in self.parts:
            settings = {name: part[name] for name in ANALYZER_SETTINGS}
            counter = CountVectorizer(**{**settings, "ngram_range": tuple(part["ngram_range"])},
                                      vocabulary={term: i for i, term in enumerate(part["terms"])}, dtype=np.float64)
            counter.transform([""])  # indexes the vocabulary now, before any thread shares the counter
            self._counters.append(counter)
        self._scales = [sparse.diags(idf.astype(np.float64)) for idf in self.idf]
        self._weights = self.coef.T.astype(np.float64), self.intercept.astype(np.float64)

    def features(self, texts: list[str]) -> Any:
        from scipy import sparse
        from sklearn.preprocessing import normalize

        blocks = []
        for part, counter, scale in zip(self.parts, self._counters, self._scales, strict=True):
            counts = counter.transform(texts).tocsr()
            if part["sublinear_tf"]:
                np.log(counts.data, out=counts.data)
                counts.data += 1
            blocks.append(normalize(counts @ scale, norm="l2"))
        return sparse.hstack(blocks, format="csr")

    @property
    def classes(self) -> int:
        return 2 if self.kind == "binary" else len(self.intercept)

    def proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities, (len(texts), classes), as the fitted pipeline's ``predict_proba``."""
        if not texts:
            return np.zeros((0, self.classes))
        weights, intercept = self._weights
        scores = np.asarray(self.features(texts) @ weights + intercept)
        if self.kind == "softmax":
            exp = np.exp(scores - scores.max(axis=1, keepdims=True))
            return exp / exp.sum(axis=1, keepdims=True)
        positive = 1.0 / (1.0 + np.exp(-scores))
        return np.hstack([1 - positive, positive]) if self.kind == "binary" else positive

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        arrays = {f"idf.{i}": idf for i, idf in enumerate(self.idf)} | {"coef": self.coef, "intercept": self.intercept}
        # C order: safetensors writes an array's buffer as it lies, and sklearn's coef_ may lie in Fortran order
        save_file({name: np.ascontiguousarray(array) for name, array in arrays.items()}, str(folder / BASELINE_WEIGHTS))
        text = json.dumps({"format": FORMAT, "kind": self.kind, "parts": self.parts}, ensure_ascii=False)
        (folder / BASELINE_JSON).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, labels: int, multi_label: bool = False) -> LinearBaseline:
        """Read it back; ValueError naming what is wrong when the files do not make a baseline for ``labels``
        classes (or, ``multi_label``, labels)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        for name in BASELINE_FILES:
            if not (folder / name).is_file():
                raise ValueError(f"{name} is missing")
        try:
            described = json.loads((folder / BASELINE_JSON).read_text(encoding="utf-8"))
            arrays = load_file(str(folder / BASELINE_WEIGHTS))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as err:
            raise ValueError(f"{BASELINE_JSON} or {BASELINE_WEIGHTS} cannot be read "
                             f"({str(err).splitlines()[0]})") from None
        parts = described.get("parts") if isinstance(described, dict) else None
        kind = described.get("kind") if isinstance(described, dict) else None
        if not isinstance(parts, list) or not parts or described.get("format") != FORMAT \
                or kind not in ("sigmoid", "softmax", "binary"):
            raise ValueError(f"{BASELINE_JSON} is not a baseline this bertfit reads")
        rows = 1 if kind == "binary" else labels
        idf = [arrays.get(f"idf.{i}") for i in range(len(parts))]
        coef, intercept = arrays.get("coef"), arrays.get("intercept")
        widths = [len(part.get("terms") or []) if isinstance(part, dict) else -1 for part in parts]
        if any(v is None for v in (*idf, coef, intercept)) or [len(v) for v in idf] != widths \
                or coef.shape != (rows, sum(widths)) or intercept.shape != (rows,) \
                or (kind == "binary") != (labels == 2 and rows == 1) or (kind == "sigmoid") != multi_label \
                or not all(_sound(part) for part in parts):
            raise ValueError(f"{BASELINE_JSON} and {BASELINE_WEIGHTS} do not agree with each other or with "
                             f"the model's {labels} {'labels' if multi_label else 'classes'}")
        if not all(np.isfinite(array).all() for array in (*idf, coef, intercept)):
            raise ValueError(f"{BASELINE_WEIGHTS} holds numbers that are not finite (NaN or infinity)")
        try:
            return cls(parts, idf, coef, intercept, kind)
        except (ValueError, re.error) as err:  # settings the analyzers refuse (a token pattern that is no regex)
            raise ValueError(f"{BASELINE_JSON} holds analyzer settings that cannot be used ({err})") from None


def _sound(part: dict[str, Any]) -> bool:
    """Whether one vectorizer's saved settings are what TF-IDF analyzers take."""
    low_high = part.get("ngram_range")
    grams = (isinstance(low_high, list) and len(low_high) == 2
             and all(isinstance(n, int) and not isinstance(n, bool) for n in low_high)
             and 1 <= low_high[0] <= low_high[1])
    return (grams and part.get("analyzer") in ("word", "char", "char_wb")
            and all(isinstance(part.get(name), bool) for name in ("lowercase", "binary", "sublinear_tf"))
            and isinstance(part.get("token_pattern"), str | None)
            and part.get("strip_accents") in (None, "ascii", "unicode")
            and all(isinstance(term, str) for term in part["terms"]))


def joined(texts: list[str], pairs: list[str] | None) -> list[str]:
    """Texts as the baseline reads them: a sentence pair joined into one text, ``a [SEP] b``."""
    if pairs is None:
        return list(texts)
    return [f"{a} [SEP] {b}" for a, b in zip(texts, pairs, strict=True)]


def blend(model_proba: np.ndarray, baseline_proba: np.ndarray, weight: float) -> np.ndarray:
    return weight * np.asarray(model_proba, dtype=np.float64) + (1 - weight) * baseline_proba


def blended_logits(model_proba: np.ndarray, baseline_proba: np.ndarray, weight: float, multi_label: bool,
                   temperature: float = 1.0) -> np.ndarray:
    """Logits that the model's own reading (a sigmoid per label; a softmax of logits / ``temperature``) turns
    into the weighted average of the model's and the baseline's probabilities."""
    averaged = np.clip(blend(model_proba, baseline_proba, weight), EDGE, 1 - EDGE)
    if multi_label:
        return (np.log(averaged) - np.log1p(-averaged)).astype(np.float32)
    return (temperature * np.log(averaged)).astype(np.float32)  # softmax(log p) is p: each row sums to 1


def choose_weight(model_proba: np.ndarray, baseline_proba: np.ndarray, targets: np.ndarray,
                  multi_label: bool) -> tuple[float | None, dict[str, float]]:
    """The model's weight with the best validation score (accuracy; micro F1 with thresholds tuned again
    for each weight), and the scores of the model alone, the baseline alone and that blend. None where
    the blend does not beat both the model alone and the baseline alone: then the model stands alone."""
    from bertfit.metrics import multilabel_metrics, tune_thresholds

    def score(proba: np.ndarray) -> float:
        if multi_label:
            return float(multilabel_metrics(targets, proba, tune_thresholds(targets, proba))["f1_micro"])
        return float(np.mean(proba.argmax(axis=1) == targets))

    scores = {float(w): score(blend(model_proba, baseline_proba, float(w))) for w in WEIGHTS}
    best = max(scores, key=lambda w: (scores[w], w))  # a tie goes to the larger model weight
    figures = {"model": scores[1.0], "baseline": scores[0.0], "blend": scores[best]}
    taken = best if scores[best] > max(scores[1.0], scores[0.0]) else None
    return taken, figures
