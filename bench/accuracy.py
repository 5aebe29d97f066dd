"""Test-set accuracy of bertfit's recipes beside a TF-IDF + logistic regression baseline.

Reads the fixed public splits in ../shared/datasets (never copied into this repo) and prints a
Markdown table: test accuracy, macro F1, ROC AUC and time per data set and recipe.

    python bench/accuracy.py                       # all data sets, all recipes (about an hour on 2 cores)
    python bench/accuracy.py --datasets phishing --recipes tfidf,default
    python bench/accuracy.py --quick               # 600 training rows and 2 epochs each: a smoke run

Recipes:
  tfidf    word + char TF-IDF with logistic regression (bertfit.baseline); one-vs-rest with
           per-label thresholds tuned on validation for multi-label
  default  `bertfit train` defaults: all layers, lr by model width, up to 10 epochs, early stopping
  weighted default plus --class-weights balanced
  pooler   the seed tutorial's recipe: base frozen but the pooler, lr 2e-4, batch 8, 10 epochs

Data sets: phishing, sms-spam, trec, banking77 (single-label), goemotions (multi-label, 28
labels), mrpc (sentence pairs). Multi-label rows report micro F1 (thresholds tuned on validation)
and, for the transformer, the same model at a fixed 0.5 threshold.

    python bench/accuracy.py --datasets goemotions --recipes tfidf,default --train-rows 8000 --epochs 3
    python bench/accuracy.py --datasets mrpc,sms-spam --recipes tfidf,default,weighted
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("BERTFIT_SHARED", HERE.parent.parent / "shared")) / "datasets"
DATASETS = ("phishing", "sms-spam", "trec", "banking77", "goemotions", "mrpc")
RECIPES = {
    "default": {},
    "weighted": {"class_weights": "balanced"},
    "pooler": {"train_layers": "pooler", "learning_rate": 2e-4, "batch_size": 8, "epochs": 10, "patience": 0},
}


def run(name: str, recipes: list[str], quick: bool, extra: dict, train_rows: int | None = None) -> list[dict]:
    from bertfit.baseline import fit_and_score
    from bertfit.config import DataConfig
    from bertfit.data import prepare
    from bertfit.training import train

    # The public splits share a few texts (phishing: 9); drop them from validation/test, as a user would.
    prepared = prepare(SHARED / name, DataConfig(drop_leaks=True))
    if quick or train_rows:
        prepared.train = prepared.train.sample(n=min(train_rows or 600, len(prepared.train)), random_state=0)
    rows = []
    for recipe in recipes:
        started = time.perf_counter()
        if recipe == "tfidf":
            metrics = fit_and_score(prepared)
            epochs, calibration = None, {}
        else:
            settings = {**RECIPES[recipe], **extra}
            if quick:
                settings["epochs"] = 2
            result = train(prepared, out=None, progress=False, baseline=False, **settings)
            metrics, epochs = result.test, f"{result.best_epoch}/{len(result.history)}"
            calibration = result.classifier.meta.get("calibration") or {}
        seconds = time.perf_counter() - started
        label = recipe + "".join(f" {k}={v}" for k, v in extra.items()) if recipe != "tfidf" else recipe
        main = "accuracy" if "accuracy" in metrics else "f1_micro"
        rows.append({"dataset": name, "recipe": label, "metric": main, "value": metrics[main],
                     "f1_macro": metrics["f1_macro"], "auc": metrics["auc"], "seconds": round(seconds, 1),
                     "best_epoch": epochs, "train_rows": len(prepared.train), "test_rows": len(prepared.test),
                     "ece_before": calibration.get("test_ece_before"), "ece": metrics.get("ece"),
                     "at_0.5": metrics.get("at_threshold_0.5")})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| data set | recipe | test metric | value | macro F1 | ROC AUC | best epoch / run | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        auc = f"{r['auc']:.3f}" if r["auc"] is not None else "n/a"
        lines.append(f"| {r['dataset']} | {r['recipe']} | {r['metric']} | {r['value']:.3f} | {r['f1_macro']:.3f} | "
                     f"{auc} | {r['best_epoch'] or '-'} | {r['seconds']:.0f} |")
        if r.get("at_0.5"):  # multi-label: the same model with every threshold at 0.5
            fixed = r["at_0.5"]
            lines.append(f"| {r['dataset']} | {r['recipe']}, thresholds 0.5 | f1_micro | {fixed['f1_micro']:.3f} | "
                         f"{fixed['f1_macro']:.3f} | | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--recipes", default="tfidf,default,pooler")
    parser.add_argument("--quick", action="store_true", help="600 training rows, 2 epochs: a smoke run")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--precision", help="bertfit's --precision for the transformer recipes")
    parser.add_argument("--bucket", action="store_true", help="--bucket-by-length for the transformer recipes")
    parser.add_argument("--train-rows", type=int, help="a seeded sample of this many training rows")
    parser.add_argument("--epochs", type=int, help="the most epochs for the transformer recipes")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} not found (set BERTFIT_SHARED to the folder holding datasets/)")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("bertfit").setLevel(logging.INFO)  # per-epoch lines on stderr
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    rows = []
    for name in args.datasets.split(","):
        if not (SHARED / name).is_dir():
            print(f"skipped {name}: not in {SHARED}", file=sys.stderr)
            continue
        extra = {"precision": args.precision} if args.precision else {}
        if args.bucket:
            extra["bucket_by_length"] = True
        if args.epochs:
            extra["epochs"] = args.epochs
        rows += run(name, args.recipes.split(","), args.quick, extra, args.train_rows)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
