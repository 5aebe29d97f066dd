"""The evidence an audit weighs: out-of-fold probabilities, sentence embeddings, near-duplicates, outliers.

Out-of-fold: the labelled rows (train and validation) are cut into K stratified folds, and each
fold is scored by a model fitted on the others, so no row is scored by a model that saw it; the
test split is scored by a model fitted on all of them. The models are cheap on purpose: logistic
regression on the embedded sentence model's mean-pooled embeddings (``embed``, each text encoded
once), on TF-IDF (``tfidf``, bertfit's baseline), or the mean of both (``both``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from bertfit.progress import progress_bar

log = logging.getLogger(__name__)

METHODS = ("embed", "tfidf", "both", "finetune")  # finetune: bertfit.auditing.finetuned
DUPLICATE_SIMILARITY = 0.97  # cosine of two embeddings above which two texts read as the same
OUTLIER_Z = 3.0  # a text this many standard deviations farther from its label's centre than its label's texts


def sentence_embeddings(texts: list[str], pairs: list[str] | None, model_path: str, batch_size: int = 64,
                        progress: bool = False) -> np.ndarray:
    """Mean-pooled, unit-length embeddings (rows, width) of the texts (with their pairs), shortest batches first."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    order = np.argsort([len(t) + len(p) for t, p in zip(texts, pairs or [""] * len(texts), strict=True)])
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode():
        for chosen in progress_bar(batches, desc="embedding", unit="batches", disable=not progress):
            encoded = tokenizer([texts[i] for i in chosen], [pairs[i] for i in chosen] if pairs else None,
                                truncation=True, max_length=256, padding=True, return_tensors="pt")
            hidden = model(**encoded).last_hidden_state  # (batch, seq, width)
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[chosen] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def out_of_fold(features: dict[str, Any], labels: np.ndarray, test: dict[str, Any], classes: int, folds: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (rows, classes) for every labelled row from the fold that left it out, and for the test rows
    from a model fitted on all labelled rows; the mean over the given feature kinds ("embed", "tfidf")."""
    splitter = fold_splitter(labels, classes, folds, seed)
    labelled = np.zeros((len(labels), classes))
    scored = np.zeros((_rows(next(iter(test.values()))), classes))
    for kind, values in features.items():
        for fit_rows, held_out in splitter.split(np.zeros(len(labels)), labels):
            labelled[held_out] += _fit_predict(kind, _take(values, fit_rows), labels[fit_rows],
                                               _take(values, held_out), classes, seed)
        scored += _fit_predict(kind, values, labels, test[kind], classes, seed)
    return labelled / len(features), scored / len(features)


def fold_splitter(labels: np.ndarray, classes: int, folds: int, seed: int) -> StratifiedKFold:
    """Stratified, seeded folds: ``folds`` of them, fewer where the smallest class has fewer rows (2 at least)."""
    counts = np.bincount(labels, minlength=classes)
    smallest = int(counts[counts > 0].min())
    return StratifiedKFold(n_splits=min(folds, max(2, smallest)), shuffle=True, random_state=seed)


def _fit_predict(kind: str, train: Any, labels: np.ndarray, rows: Any, classes: int, seed: int) -> np.ndarray:
    from bertfit.training.baseline import tfidf_logreg

    model = tfidf_logreg(seed) if kind == "tfidf" else LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    model.fit(train, labels)
    proba = np.zeros((_rows(rows), classes))
    proba[:, model.classes_] = model.predict_proba(rows)  # a class absent from this fold stays at 0
    return proba


def _take(values: Any, rows: np.ndarray) -> Any:
    return values[rows] if isinstance(values, np.ndarray) else [values[i] for i in rows]


def _rows(values: Any) -> int:
    return values.shape[0] if isinstance(values, np.ndarray) else len(values)


def near_duplicates(embeddings: np.ndarray, labels: np.ndarray, block: int = 2048) -> list[list[int]]:
    """Groups of rows whose texts read as the same (cosine >= DUPLICATE_SIMILARITY) but carry different labels."""
    parent = list(range(len(labels)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(labels), block):
        similar = embeddings[start:start + block] @ embeddings.T  # (block, rows)
        rows, cols = np.nonzero(similar >= DUPLICATE_SIMILARITY)
        for i, j in zip(rows + start, cols, strict=True):
            if i < j and labels[i] != labels[j]:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(labels)):
        groups.setdefault(root(i), []).append(i)
    return [members for members in groups.values() if len(members) > 1]


def outliers(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows far from their label's centre: distance z-score within the label above OUTLIER_Z (bool per row)."""
    flagged = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        mine = np.flatnonzero(labels == label)
        if len(mine) < 10:
            continue  # too few texts to say what is far
        centre = embeddings[mine].mean(0)
        distance = 1 - embeddings[mine] @ (centre / max(np.linalg.norm(centre), 1e-12))
        spread = distance.std()
        if spread > 0:
            flagged[mine] = (distance - distance.mean()) / spread > OUTLIER_Z
    return flagged
