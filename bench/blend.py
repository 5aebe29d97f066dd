"""Would averaging the default model's probabilities with the TF-IDF baseline beat both? Measured after the fact.

The lever behind the default's blend (``bertfit.blend``), measured on any data set: the fine-tuned
model's calibrated probabilities weighed against the TF-IDF + logistic regression baseline's,
p = w * model + (1 - w) * baseline, with w chosen on the validation split (a grid of 0 to 1 in
steps of 0.05; for multi-label the per-label thresholds are tuned again on validation for every
w). The blend is taken only where its best validation score beats both w = 1 (the model alone)
and w = 0 (the baseline alone); otherwise the model stands alone, as in bertfit. The test split
then scores the model, the baseline and the chosen blend, so the three sit side by side from one
training per seed (trained with --no-baseline, so the model here is the transformer alone).

Per seed: the default recipe trains once (as `bench/accuracy.py` runs it), its model scores the
validation and test splits, and the baseline fits on the training split. Printed: per data set, the
test metric of each (mean +- std over the seeds, min-max), the chosen weights, and how many seeds
took the blend. The seconds are the default's training and the blend's extra cost (the baseline's
fit and its scoring of validation and test; the model's scores are what bertfit has already).

    python bench/blend.py --datasets phishing,sms-spam,trec
    python bench/blend.py --datasets goemotions --goemotions-rows 1500
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from accuracy import load, warm_up
from timing import SHARED, measured_on, quiet, shared_missing


def split_probabilities(classifier, prepared) -> dict[str, np.ndarray]:
    """The trained model's probabilities (calibrated softmax or per-label sigmoid) on validation and test."""
    out = {}
    for split in ("validation", "test"):
        frame = getattr(prepared, split)
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        out[split] = classifier.predict_proba(frame["text"].tolist(), pairs=pairs)
    return out


def baseline_probabilities(prepared, seed: int) -> dict[str, np.ndarray]:
    """The TF-IDF baseline fitted on train, its probabilities on validation and test in label-id order."""
    from bertfit.training.baseline import joined_texts, probabilities, tfidf_logreg

    labels = prepared.labels
    if prepared.multi_label:
        targets = labels.encode_multi(prepared.train["label"].tolist())
    else:
        targets = labels.encode(prepared.train["label"].tolist())
    model = tfidf_logreg(seed, multi_label=prepared.multi_label).fit(joined_texts(prepared.train), targets)
    return {split: probabilities(model, joined_texts(getattr(prepared, split)), len(labels))
            for split in ("validation", "test")}


def truths(prepared) -> dict[str, np.ndarray]:
    labels = prepared.labels
    encode = labels.encode_multi if prepared.multi_label else labels.encode
    return {split: encode(getattr(prepared, split)["label"].tolist()) for split in ("validation", "test")}


def scored(p_val, p_test, y, multi_label: bool) -> tuple[float, float]:
    """Validation and test headline metric of one set of probabilities (multi-label: thresholds from validation)."""
    from bertfit.metrics import classification_metrics, multilabel_metrics, tune_thresholds

    if multi_label:
        cuts = tune_thresholds(y["validation"], p_val)
        return (multilabel_metrics(y["validation"], p_val, cuts)["f1_micro"],
                multilabel_metrics(y["test"], p_test, cuts)["f1_micro"])
    return (classification_metrics(y["validation"], p_val)["accuracy"],
            classification_metrics(y["test"], p_test)["accuracy"])


def blend(model: dict, baseline: dict, y: dict, multi_label: bool) -> dict:
    """The weight bertfit's rule takes on validation (``bertfit.blend.choose_weight``) and the three test scores."""
    from bertfit.blend import blend as average
    from bertfit.blend import choose_weight

    weight, figures = choose_weight(model["validation"], baseline["validation"], y["validation"], multi_label)
    taken = 1.0 if weight is None else weight  # not taken: the model alone

    def test_score(w: float) -> float:
        return scored(average(model["validation"], baseline["validation"], w),
                      average(model["test"], baseline["test"], w), y, multi_label)[1]

    return {"weight": taken, "model": test_score(1.0), "baseline": test_score(0.0), "blend": test_score(taken),
            "validation": figures}


def one_seed(name: str, prepared, seed: int) -> dict:
    from bertfit.training.run import train

    started = time.perf_counter()
    result = train(prepared, out=None, progress=False, baseline=False, seed=seed)
    trained = time.perf_counter() - started
    model = split_probabilities(result.classifier, prepared)
    started = time.perf_counter()
    linear = baseline_probabilities(prepared, seed)
    extra = time.perf_counter() - started
    figures = blend(model, linear, truths(prepared), prepared.multi_label)
    return {"dataset": name, "seed": seed, "best_epoch": f"{result.best_epoch}/{len(result.history)}",
            "train_seconds": round(trained, 1), "baseline_seconds": round(extra, 1), **figures}


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {sd:.4f} ({min(values):.4f}-{max(values):.4f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--datasets", default="phishing,sms-spam,trec,bbc-news")
    parser.add_argument("--seeds", type=int, default=3, help="this many seeds from 42")
    parser.add_argument("--train-rows", type=int, help="a sample of this many training rows (the same every seed)")
    parser.add_argument("--goemotions-rows", type=int, help="goemotions only: a sample of this many training rows")
    args = parser.parse_args()
    if shared_missing():
        return 0
    quiet()
    print(f"{measured_on()}; data: {SHARED}")
    print("| data set | seeds | model alone | TF-IDF | blend (by the beat-both rule) | weights taken | "
          "blend taken | training s | blend's extra s |")
    print("| --- " * 9 + "|")
    for name in args.datasets.split(","):
        rows = args.goemotions_rows if name == "goemotions" and args.goemotions_rows else args.train_rows
        runs = []
        for seed in range(42, 42 + args.seeds):
            prepared = load(name, seed, rows)
            if not runs:
                warm_up(["default"], prepared, seed, {})
            runs.append(one_seed(name, prepared, seed))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        taken = sum(r["weight"] < 1.0 for r in runs)
        print(f"| {name} | {len(runs)} | {spread([r['model'] for r in runs])} | "
              f"{spread([r['baseline'] for r in runs])} | {spread([r['blend'] for r in runs])} | "
              f"{', '.join(str(r['weight']) for r in runs)} | {taken} of {len(runs)} | "
              f"{statistics.median(r['train_seconds'] for r in runs):.0f} | "
              f"{statistics.median(r['baseline_seconds'] for r in runs):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
