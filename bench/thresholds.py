"""Multi-label thresholds: each label's cut for its own F1 (bertfit before) against cuts for micro F1 (now).

Trains the default recipe (and fits the TF-IDF baseline) on goemotions' training split or a sample
of it, then scores the test split with thresholds chosen on validation both ways, and at 0.5 for
every label. The models are the same in every row; only the cuts differ.

    python bench/thresholds.py                      # 1,500 training rows, seed 42 (~6 min on 2 cores)
    python bench/thresholds.py --rows 5000 --seeds 42,43 --no-transformer
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bertfit.metrics import THRESHOLD_GRID as GRID
from timing import measured_on, quiet, shared_missing


def own_f1_cuts(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """bertfit's rule before: per label, the cut with that label's best F1 (ties: nearest 0.5)."""
    y_true = np.asarray(y_true).astype(bool)
    cuts = np.full(y_true.shape[1], 0.5)
    for k in np.flatnonzero(y_true.sum(axis=0)):
        called = proba[:, k][:, None] >= GRID[None, :]
        f1 = 2 * (called & y_true[:, k][:, None]).sum(axis=0) / np.maximum(called.sum(axis=0) + y_true[:, k].sum(), 1)
        best = np.flatnonzero(f1 == f1.max())
        cuts[k] = GRID[best[np.argmin(np.abs(GRID[best] - 0.5))]]
    return cuts


def probabilities(prepared, seed: int, transformer: bool) -> dict[str, tuple]:
    """Validation and test probabilities of each model: {model: ((y_val, p_val), (y_test, p_test))}."""
    from bertfit.training.baseline import joined_texts, tfidf_logreg
    from bertfit.training.run import train

    labels = prepared.labels
    truth = {split: labels.encode_multi(getattr(prepared, split)["label"].tolist()) for split in ("validation", "test")}
    texts = {name: joined_texts(frame) for name, frame in prepared.splits().items()}
    train_truth = labels.encode_multi(prepared.train["label"].tolist())
    tfidf = tfidf_logreg(seed, multi_label=True).fit(texts["train"], train_truth)
    out = {"TF-IDF + LR": tuple((truth[s], tfidf.predict_proba(texts[s])) for s in ("validation", "test"))}
    if transformer:
        classifier = train(prepared, out=None, progress=False, baseline=False, seed=seed).classifier
        out["default recipe"] = tuple((truth[s], classifier.probabilities(classifier.logits(texts[s])))
                                      for s in ("validation", "test"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1500, help="goemotions training rows sampled (default 1500)")
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds")
    parser.add_argument("--no-transformer", action="store_true", help="TF-IDF only (seconds, not minutes)")
    args = parser.parse_args()
    if shared_missing():
        return 0
    quiet()
    from accuracy import load
    from bertfit.metrics import multilabel_metrics, tune_thresholds

    print(measured_on())
    print("| model | seed | thresholds | test micro F1 | test macro F1 |\n| --- | --- | --- | --- | --- |")
    for seed in (int(s) for s in args.seeds.split(",")):
        prepared = load("goemotions", seed, args.rows)
        for model, ((y_val, p_val), (y_test, p_test)) in probabilities(prepared, seed, not args.no_transformer).items():
            for rule, cuts in (("0.5 for every label", 0.5), ("per label, own F1 (before)", own_f1_cuts(y_val, p_val)),
                               ("for micro F1 (now)", tune_thresholds(y_val, p_val))):
                scores = multilabel_metrics(y_test, p_test, cuts)
                print(f"| {model}, {args.rows} rows | {seed} | {rule} | {scores['f1_micro']:.3f} | "
                      f"{scores['f1_macro']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
