"""Which epoch a multi-label run should keep: by micro F1 at 0.5, at the best shared cut, or after tuned cuts.

Trains the default recipe once per seed on a multi-label data set (its plan, no extra epochs),
keeps every epoch's weights, and scores validation and test with each. Each rule picks an epoch
on validation alone; the kept epoch then gets per-label cuts tuned on validation, as ``bertfit
train`` does, and is scored on test. One training run serves every rule, so the rules differ in
the epoch they pick and in nothing else.

Rules:
  at 0.5       validation micro F1 with every cut at 0.5 (bertfit's choice until this bench)
  shared cut   validation micro F1 at the one cut shared by all labels that is best on validation
  tuned cuts   validation micro F1 after the per-label cuts bertfit tunes (fitted on the same rows)
  loss         the lowest validation loss
  (best test)  the epoch with the best test score after tuned cuts: a ceiling, not a rule

    python bench/epoch_choice.py                                  # goemotions, 1,500 rows, seeds 42-44
    python bench/epoch_choice.py --rows 5000 --seeds 42
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from transformers import TrainerCallback

from bertfit.metrics import THRESHOLD_GRID, multilabel_metrics, tune_thresholds
from timing import SHARED, measured_on, quiet, shared_missing

RULES = ("at 0.5", "shared cut", "tuned cuts", "loss", "(best test)")


class Snapshots(TrainerCallback):
    """Every evaluated epoch's weights, in memory."""

    def __init__(self):
        self.by_epoch: dict[int, dict] = {}

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.by_epoch[int(round(state.epoch or 0))] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def shared_cut_f1(y_true: np.ndarray, proba: np.ndarray) -> float:
    return max(multilabel_metrics(y_true, proba, cut)["f1_micro"] for cut in THRESHOLD_GRID)


def one_seed(prepared, seed: int) -> dict:
    """Per epoch: validation figures under each rule and the test micro F1 after tuned cuts."""
    from bertfit.config import TrainConfig
    from bertfit.training.run import fit_model

    snapshots = Snapshots()
    config = TrainConfig(seed=seed, more_epochs=False, baseline=False, report=False)
    fitted = fit_model(prepared, config, progress=False, callbacks=[snapshots])
    classifier, labels = fitted.classifier, prepared.labels
    truth = {s: labels.encode_multi(getattr(prepared, s)["label"].tolist()) for s in ("validation", "test")}
    epochs = []
    for entry in fitted.history:
        classifier.model.load_state_dict(snapshots.by_epoch[entry["epoch"]])
        proba = {s: classifier.probabilities(classifier.logits(getattr(prepared, s)["text"].tolist()))
                 for s in ("validation", "test")}
        cuts = tune_thresholds(truth["validation"], proba["validation"])
        epochs.append({
            "epoch": entry["epoch"],
            "at 0.5": multilabel_metrics(truth["validation"], proba["validation"], 0.5)["f1_micro"],
            "shared cut": shared_cut_f1(truth["validation"], proba["validation"]),
            "tuned cuts": multilabel_metrics(truth["validation"], proba["validation"], cuts)["f1_micro"],
            "loss": -entry["validation"]["loss"],
            "test": multilabel_metrics(truth["test"], proba["test"], cuts)["f1_micro"],
        })
    chosen = {rule: max(epochs, key=lambda e, r=rule: e[r]) for rule in RULES if rule != "(best test)"}
    chosen["(best test)"] = max(epochs, key=lambda e: e["test"])
    return {"seed": seed, "epochs": epochs,
            "chosen": {rule: {"epoch": e["epoch"], "test": e["test"]} for rule, e in chosen.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="goemotions", help="a multi-label set in ../shared/datasets")
    parser.add_argument("--rows", type=int, default=1500, help="training rows sampled (the same every seed)")
    parser.add_argument("--seeds", default="42,43,44", help="comma-separated training seeds")
    parser.add_argument("--json", help="also write every epoch's figures to this file")
    args = parser.parse_args()
    if shared_missing():
        return 0
    quiet()
    from bertfit.config import DataConfig
    from bertfit.data.cleaning import prepare

    prepared = prepare(SHARED / args.dataset, DataConfig(drop_leaks=True))
    if not prepared.multi_label:
        print(f"{args.dataset} is not multi-label: nothing to compare", file=sys.stderr)
        return 2
    prepared.train = prepared.train.sample(n=min(args.rows, len(prepared.train)), random_state=0)
    print(f"{measured_on()}; {args.dataset}, {len(prepared.train)} training rows\n", flush=True)
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        runs.append(one_seed(prepared, seed))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    print("| rule | epoch kept per seed | test micro F1 (tuned cuts), mean | per seed |")
    print("| --- | --- | --- | --- |")
    for rule in RULES:
        picks = [r["chosen"][rule] for r in runs]
        tests = [p["test"] for p in picks]
        print(f"| {rule} | {', '.join(str(p['epoch']) for p in picks)} | {np.mean(tests):.3f} | "
              f"{', '.join(f'{t:.3f}' for t in tests)} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(runs, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
