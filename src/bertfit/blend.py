"""The TF-IDF baseline kept beside a multi-label model, and its blend with the transformer.

On small multi-label data the linear baseline sees rare labels the transformer has not learned
yet, and averaging the two is worth about a point of micro F1 (``bench/blend.py``). Training
weighs them, p = w * model + (1 - w) * baseline, with w chosen on validation (:func:`choose_weight`),
and keeps the blend only where it beats both there. The baseline is then saved in the folder as
plain arrays, never pickle: its vocabularies and settings in ``baseline.json``, its idf and
logistic-regression weights in ``baseline.safetensors``. :class:`LinearBaseline` rebuilds the
probabilities from those with the same n-gram analyzers; :func:`blended_logits` turns the average
back into logits, so everything downstream of ``TextClassifier.logits`` (thresholds, records,
metrics, the server, the export's check) reads the blend without knowing of it.
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
    """TF-IDF features (one part per vectorizer, each L2-normalised) and one logistic regression per label."""

    parts: list[dict[str, Any]]  # per vectorizer: its analyzer settings, sublinear_tf, and its terms in column order
    idf: list[np.ndarray]
    coef: np.ndarray  # (labels, features)
    intercept: np.ndarray  # (labels,)

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> LinearBaseline:
        """From ``training.baseline.tfidf_logreg(multi_label=True)`` fitted: its arrays, nothing else."""
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
        width = sum(len(part["terms"]) for part in parts)
        coef = np.zeros((len(classifier.estimators_), width), dtype=np.float32)
        intercept = np.zeros(len(classifier.estimators_), dtype=np.float32)
        for label, estimator in enumerate(classifier.estimators_):
            if hasattr(estimator, "coef_"):
                coef[label], intercept[label] = estimator.coef_[0], estimator.intercept_[0]
            else:  # sklearn's constant predictor: every training row had the label, or none did
                intercept[label] = CONSTANT_LOGIT if float(np.ravel(estimator.y_)[0]) > 0.5 else -CONSTANT_LOGIT
        return cls(parts, idf, coef, intercept)

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

    def proba(self, texts: list[str]) -> np.ndarray:
        """Per-label probabilities, (len(texts), labels), as the fitted pipeline's ``predict_proba``."""
        if not texts:
            return np.zeros((0, len(self.intercept)))
        scores = self.features(texts) @ self.coef.T.astype(np.float64) + self.intercept.astype(np.float64)
        return 1.0 / (1.0 + np.exp(-np.asarray(scores)))

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        arrays = {f"idf.{i}": idf for i, idf in enumerate(self.idf)}
        save_file({**arrays, "coef": self.coef, "intercept": self.intercept}, str(folder / BASELINE_WEIGHTS))
        text = json.dumps({"format": FORMAT, "parts": self.parts}, ensure_ascii=False)
        (folder / BASELINE_JSON).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, labels: int) -> LinearBaseline:
        """Read it back; ValueError naming what is wrong when the files do not make a baseline for ``labels``."""
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
        if not isinstance(parts, list) or not parts or described.get("format") != FORMAT:
            raise ValueError(f"{BASELINE_JSON} is not a baseline this bertfit reads")
        idf = [arrays.get(f"idf.{i}") for i in range(len(parts))]
        coef, intercept = arrays.get("coef"), arrays.get("intercept")
        widths = [len(part.get("terms") or []) if isinstance(part, dict) else -1 for part in parts]
        if any(v is None for v in (*idf, coef, intercept)) or [len(v) for v in idf] != widths \
                or coef.shape != (labels, sum(widths)) or intercept.shape != (labels,) \
                or not all(_sound(part) for part in parts):
            raise ValueError(f"{BASELINE_JSON} and {BASELINE_WEIGHTS} do not agree with each other or with "
                             f"the model's {labels} labels")
        try:
            return cls(parts, idf, coef, intercept)
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


def blended_logits(logits: np.ndarray, baseline_proba: np.ndarray, weight: float) -> np.ndarray:
    """Per-label logits whose sigmoid is the weighted average of the model's and the baseline's probabilities."""
    model_proba = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    averaged = np.clip(blend(model_proba, baseline_proba, weight), EDGE, 1 - EDGE)
    return (np.log(averaged) - np.log1p(-averaged)).astype(np.float32)


def choose_weight(model_proba: np.ndarray, baseline_proba: np.ndarray,
                  targets: np.ndarray) -> tuple[float | None, dict[str, float]]:
    """The model's weight with the best validation micro F1 (thresholds tuned again for each), and the
    scores of the model alone, the baseline alone and that blend. None where the blend beats neither
    the model alone nor the baseline alone: then the model stands alone."""
    from bertfit.metrics import multilabel_metrics, tune_thresholds

    def micro_f1(proba: np.ndarray) -> float:
        return float(multilabel_metrics(targets, proba, tune_thresholds(targets, proba))["f1_micro"])

    scores = {float(w): micro_f1(blend(model_proba, baseline_proba, float(w))) for w in WEIGHTS}
    best = max(scores, key=lambda w: (scores[w], w))  # a tie goes to the larger model weight
    figures = {"model": scores[1.0], "baseline": scores[0.0], "blend": scores[best]}
    taken = best if scores[best] > max(scores[1.0], scores[0.0]) else None
    return taken, figures
