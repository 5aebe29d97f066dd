"""Test-set accuracy of bertfit's recipes and a plain Trainer run beside a TF-IDF baseline, over several seeds.

Reads the public splits in ../shared/datasets (never copied into this repo) and prints a Markdown
table: per data set and recipe, the test metric (accuracy; micro F1 for multi-label) as mean ±
standard deviation (sample, n-1) with the min-max over the seeds, macro F1 and ROC AUC (means),
the best epoch per seed and the wall seconds (mean ± std, min-max), and each recipe's difference
from TF-IDF, called noise when the two min-max ranges overlap. The first line gives the git
commit and the machine; --json keeps every seed's figures.

Seeds: --seeds N runs seeds 42, 43, ... For a single file the split takes the seed (DataConfig(seed=...)),
as do the training (train(..., seed=...)) and the TF-IDF baseline; every data set here comes as
fixed train/validation/test files, so there the split is the same and only the training varies
(TF-IDF's solver is deterministic: its spread is 0). A --train-rows sample is drawn once
(random_state 0) and is the same for every seed. Recipes run in mirrored order per seed (A B C,
C B A, ...), so that a machine slowing down touches every recipe's seconds alike, after an untimed
warm-up of each transformer recipe (64 rows, one epoch): the first run in a process is slower.

    python bench/accuracy.py --goemotions-rows 1500   # every data set, the default recipes, 3 seeds (~10 h, 2 cores)
    python bench/accuracy.py --datasets phishing --recipes tfidf,plain,v0.1,default
    python bench/accuracy.py --quick               # 600 training rows and 2 epochs each: a smoke run
    python bench/accuracy.py --datasets trec --recipes tfidf,plain,v0.1 --train-rows 60 --epochs 1 --seeds 2

Recipes:
  tfidf    word + char TF-IDF with logistic regression (bertfit.training.baseline); one-vs-rest with
           per-label thresholds tuned on validation for multi-label
  plain    a plain Hugging Face Trainer run written here, without bertfit's training code: the embedded
           model, all layers, 3 epochs, lr 5e-5, batch 16, Trainer's defaults (no warm-up, no weight decay,
           no early stopping: the last epoch is the model), train_sampling_strategy="group_by_length",
           eval batch 64, max length 256 with truncation; multi-label at a fixed 0.5 threshold. bertfit's
           prepare() gives the same splits and bertfit.metrics the same metric definitions.
  v0.1     bertfit 0.1's defaults written out (so that a later change of a default does not move this row):
           all layers, up to 10 epochs, patience 2, warm-up 0.1, weight decay 0.01, batch 16, eval batch 64,
           lr by model width, max length 256 (or the model's limit), truncate, calibrated, no bucketing,
           the TF-IDF baseline fitted beside and never blended in
  default  `bertfit train` defaults as they are today: all layers, lr by model width, 3-6 epochs planned
           by size, the epoch kept by the main validation metric, more epochs while still learning;
           the TF-IDF baseline blended in where that beats both on validation
Every bertfit recipe's seconds are its whole train call, the TF-IDF baseline beside included, as
`bertfit train` runs by default.
  weighted default plus --class-weights balanced
  pooler   the seed tutorial's recipe: base frozen but the pooler, lr 2e-4, batch 8, 10 epochs

Data sets: phishing, sms-spam, trec, banking77 (single-label), goemotions (multi-label, 28
labels), mrpc (sentence pairs), bbc-news (long texts, 5 topics). Multi-label rows report micro F1
(bertfit and TF-IDF: thresholds tuned on validation; plain: 0.5) and, for bertfit, the same model
at a fixed 0.5 threshold. --epochs overrides every transformer recipe's epochs, plain's 3 too.

    python bench/accuracy.py --datasets goemotions --recipes tfidf,plain,v0.1 --goemotions-rows 1500
    python bench/accuracy.py --datasets mrpc,sms-spam --recipes tfidf,default,weighted
    python bench/accuracy.py --datasets bbc-news --recipes tfidf,plain,v0.1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from timing import SHARED, alternate, measured_on, quiet, shared_missing

HERE = Path(__file__).resolve().parent
DATASETS = ("phishing", "sms-spam", "trec", "banking77", "goemotions", "mrpc", "bbc-news")
FIRST_SEED = 42
# bertfit 0.1's TrainConfig defaults (src/bertfit/config.py), every training setting written out.
V0_1 = {
    "train_layers": "all", "epochs": 10, "patience": 2, "warmup_ratio": 0.1, "weight_decay": 0.01,
    "batch_size": 16, "eval_batch_size": 64, "bucket_by_length": False,
    "learning_rate": 1e-4,  # v0.1 chose it by the model's width: 1e-4 for the embedded MiniLM (384 wide)
    "max_length": 256,  # v0.1's default (the embedded model allows 512)
    "long_text": "truncate", "calibrate": True, "precision": "fp32", "class_weights": "none", "encode_once": True,
    "select_by": "loss", "head_lr_scale": 1.0,  # v0.1 kept the epoch with the lowest validation loss
    "baseline": True, "blend": False,  # v0.1 fitted the baseline beside, and never blended it in
}
RECIPES = {
    "default": {},
    "weighted": {"class_weights": "balanced"},
    "pooler": {"train_layers": "pooler", "learning_rate": 2e-4, "batch_size": 8, "epochs": 10, "patience": 0},
    "v0.1": V0_1,
}
# The plain Trainer run: Trainer's defaults for everything not named here (no warm-up, no weight decay).
PLAIN = {"epochs": 3, "learning_rate": 5e-5, "batch_size": 16, "eval_batch_size": 64, "max_length": 256}
ALL_RECIPES = ["tfidf", "plain", *RECIPES]


def _value(text: str):
    """A --variant value: a number, true/false, none, or the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def plain_trainer(prepared, seed: int, epochs: int, precision: str | None) -> dict:
    """Fine-tune with Hugging Face Trainer alone, as a careful user would, and score the test split once."""
    import tempfile

    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from bertfit.backends import resolve_precision
    from bertfit.metrics import classification_metrics, multilabel_metrics
    from bertfit.training.backbone import default_model_path

    model_path, labels, multi = default_model_path(), prepared.labels, prepared.multi_label
    set_seed(seed)  # before the head is created, so its initial weights follow the seed
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels),
        problem_type="multi_label_classification" if multi else "single_label_classification")

    def targets(frame):  # (rows,) class ids, or (rows, labels) 0/1 for multi-label
        return labels.encode_multi(frame["label"].tolist()) if multi else labels.encode(frame["label"].tolist())

    def encode(frame):
        # Sentence pairs go in as (text, text_pair); each item keeps its "input_ids" list, where Trainer's
        # length grouping reads the lengths of a list-of-dicts dataset.
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        encoded = tokenizer(frame["text"].tolist(), pairs, truncation=True, max_length=PLAIN["max_length"])
        y = targets(frame)
        return [{**{k: encoded[k][i] for k in encoded},
                 "labels": [float(v) for v in y[i]] if multi else int(y[i])} for i in range(len(frame))]

    train_set = encode(prepared.train)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, num_train_epochs=epochs, learning_rate=PLAIN["learning_rate"],
            per_device_train_batch_size=PLAIN["batch_size"], per_device_eval_batch_size=PLAIN["eval_batch_size"],
            train_sampling_strategy="group_by_length", eval_strategy="no", save_strategy="no", report_to="none",
            seed=seed, disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
            bf16=resolve_precision(precision or "fp32") == "bf16",
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_set,
                          data_collator=DataCollatorWithPadding(tokenizer))
        with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its log dicts; keep stdout for the table
            trainer.train()
        # With group_by_length, Trainer (5.x) also orders prediction by length and does not put the rows back:
        # score its predictions against the label_ids it returns, which come in the same order.
        scored = trainer.predict(encode(prepared.test))
        logits, truth = torch.as_tensor(scored.predictions).float(), np.asarray(scored.label_ids)
    if multi:
        metrics = multilabel_metrics(truth, torch.sigmoid(logits).numpy(), 0.5)
        metrics.pop("per_label")
        return metrics
    return classification_metrics(truth.astype(int), torch.softmax(logits, -1).numpy())


def load(name: str, seed: int, rows: int | None):
    """The data set's splits for this seed; a sample of `rows` training rows, the same for every seed."""
    from bertfit.config import DataConfig
    from bertfit.data.cleaning import prepare

    # The public splits share a few texts (phishing: 9); drop them from validation/test, as a user would.
    prepared = prepare(SHARED / name, DataConfig(drop_leaks=True, seed=seed))
    if rows:
        prepared.train = prepared.train.sample(n=min(rows, len(prepared.train)), random_state=0)
    return prepared


def run_once(recipe: str, prepared, seed: int, epochs: int | None, extra: dict) -> dict:
    """One recipe, one seed: its test figures and wall seconds (tokenizing, training and scoring)."""
    from bertfit.training.baseline import fit_and_score
    from bertfit.training.run import train

    started = time.perf_counter()
    best, calibration, history = None, {}, None
    if recipe == "tfidf":
        metrics = fit_and_score(prepared, seed=seed)
    elif recipe == "plain":
        metrics = plain_trainer(prepared, seed, epochs or PLAIN["epochs"], extra.get("precision"))
        best = f"{epochs or PLAIN['epochs']}/{epochs or PLAIN['epochs']}"  # no model selection: the last epoch
    else:
        settings = {**RECIPES[recipe], **extra, **({"epochs": epochs} if epochs else {})}
        # the whole train call, as a user runs it: the TF-IDF baseline beside (and blended in where taken) included
        result = train(prepared, out=None, progress=False, seed=seed, **settings)
        metrics, best = result.test, f"{result.best_epoch}/{len(result.history)}"
        calibration, history = result.classifier.meta.get("calibration") or {}, result.history
    seconds = time.perf_counter() - started
    main = "accuracy" if "accuracy" in metrics else "f1_micro"
    curve = [round(h["validation"][main], 4) for h in history] if history else None  # the main metric per epoch
    fixed = metrics.get("at_threshold_0.5")
    return {"seed": seed, "metric": main, "value": metrics[main], "f1_macro": metrics["f1_macro"],
            "auc": metrics["auc"], "seconds": round(seconds, 1), "best_epoch": best,
            "ece_before": calibration.get("test_ece_before"), "ece": metrics.get("ece"),
            "f1_micro_at_0.5": fixed["f1_micro"] if fixed else None, "validation_curve": curve}


def run(name: str, recipes: list[str], seeds: list[int], rows: int | None, epochs: int | None,
        extra: dict) -> list[dict]:
    """Every recipe on one data set for every seed, in mirrored order; one summary row per recipe."""
    per_seed: dict[str, list[dict]] = {recipe: [] for recipe in recipes}
    prepared = {seeds[0]: load(name, seeds[0], rows)}
    sizes = {"train_rows": len(prepared[seeds[0]].train), "test_rows": len(prepared[seeds[0]].test)}
    warm_up(recipes, prepared[seeds[0]], seeds[0], extra)
    for repeat, recipe in alternate(recipes, len(seeds)):
        seed = seeds[repeat]
        if seed not in prepared:
            prepared = {seed: load(name, seed, rows)}  # one seed's splits in memory at a time
            sizes = {"train_rows": len(prepared[seed].train), "test_rows": len(prepared[seed].test)}
        recipe_extra = settings_for(recipe, extra)
        measured = run_once(recipe, prepared[seed], seed, epochs if recipe != "tfidf" else None, recipe_extra)
        per_seed[recipe].append(measured)
        print(json.dumps({"dataset": name, "recipe": recipe, **measured}), file=sys.stderr, flush=True)
    rows_out = []
    for recipe, runs in per_seed.items():
        settings = settings_for(recipe, extra)
        if epochs and recipe != "tfidf":
            settings["epochs"] = epochs
        label = recipe + "".join(f" {k}={v}" for k, v in settings.items())
        at_half = [r["f1_micro_at_0.5"] for r in runs if r["f1_micro_at_0.5"] is not None]
        rows_out.append({"dataset": name, "recipe": label, "metric": runs[0]["metric"], **sizes,
                         "seeds": [r["seed"] for r in runs], "value": spread_of([r["value"] for r in runs]),
                         "seconds": spread_of([r["seconds"] for r in runs]),
                         "f1_macro": statistics.mean(r["f1_macro"] for r in runs),
                         "auc": _mean_or_none([r["auc"] for r in runs]),
                         "f1_micro_at_0.5": spread_of(at_half) if at_half else None, "per_seed": runs})
    return rows_out


def settings_for(recipe: str, extra: dict) -> dict:
    """The --variant/--precision settings a recipe takes: none for TF-IDF, only the precision for plain."""
    return {k: v for k, v in extra.items() if recipe != "tfidf" and (recipe != "plain" or k == "precision")}


def warm_up(recipes: list[str], prepared, seed: int, extra: dict) -> None:
    """Every transformer recipe once, untimed, on 64 rows of each split for one epoch.

    The first run in a process pays for first-call work (trec, seed 42: plain took 157.6 s as the
    first run, 121.6 s as the last of seed 43), and the mirrored order evens that out only over an
    even number of seeds. Best effort: a warm-up that fails is reported and the timed runs go on.
    """
    import dataclasses

    small = dataclasses.replace(prepared, **{split: getattr(prepared, split).sample(
        n=min(64, len(getattr(prepared, split))), random_state=0) for split in ("train", "validation", "test")})
    for recipe in recipes:
        if recipe == "tfidf":
            continue
        recipe_extra = settings_for(recipe, extra)
        if recipe != "plain":  # 64 rows would choose the few-shot method: warm the fine-tuning the runs time
            recipe_extra.setdefault("method", "finetune")
        try:
            run_once(recipe, small, seed, 1, recipe_extra)
        except Exception as err:  # noqa: BLE001 - the warm-up is not measured; the timed runs will show a real fault
            print(f"warm-up of {recipe} failed ({err}); timing without it", file=sys.stderr)


def spread_of(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min and max."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def _mean_or_none(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def versus(row: dict, baseline: dict | None) -> str:
    """Points above TF-IDF (difference of means); noise when the two min-max ranges overlap (TF-IDF's
    is one point when only the training varies: its solver is deterministic)."""
    if baseline is None or baseline is row:
        return ""
    ours, theirs = row["value"], baseline["value"]
    points = f"{100 * (ours['mean'] - theirs['mean']):+.1f}"
    if ours["n"] < 2:
        return f"{points} (one seed: no spread)"
    overlap = ours["min"] <= theirs["max"] and theirs["min"] <= ours["max"]
    return f"{points} ({'noise' if overlap else 'beyond the spread'})"


def table(rows: list[dict]) -> str:
    def cell(s: dict, digits: int = 3) -> str:
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"

    lines = ["| data set | train / test rows | recipe | test metric | mean ± std (min-max) | seeds | "
             "vs TF-IDF, points | macro F1 | ROC AUC | best epoch / run per seed | seconds, mean ± std (min-max) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        baseline = next((b for b in rows if b["dataset"] == r["dataset"] and b["recipe"] == "tfidf"), None)
        auc = f"{r['auc']:.3f}" if r["auc"] is not None else "n/a"
        epochs = ", ".join(str(s["best_epoch"]) for s in r["per_seed"]) if r["recipe"] != "tfidf" else "-"
        lines.append(f"| {r['dataset']} | {r['train_rows']} / {r['test_rows']} | {r['recipe']} | {r['metric']} | "
                     f"{cell(r['value'])} | {r['value']['n']} | "
                     f"{versus(r, baseline)} | {r['f1_macro']:.3f} | {auc} | {epochs} | {cell(r['seconds'], 1)} |")
        if r["f1_micro_at_0.5"]:  # multi-label: the same bertfit models with every threshold at 0.5
            lines.append(f"| {r['dataset']} | | {r['recipe']}, thresholds 0.5 | f1_micro | "
                         f"{cell(r['f1_micro_at_0.5'])} | {r['value']['n']} | | | | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: all)")
    parser.add_argument("--recipes", default="tfidf,plain,v0.1,default,pooler",
                        help=f"comma-separated, of {', '.join(ALL_RECIPES)}")
    parser.add_argument("--seeds", type=int, default=3, help="this many seeds, counting up from --first-seed")
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED,
                        help="the first seed (default: %(default)s); a chosen seed alone: --first-seed 44 --seeds 1")
    parser.add_argument("--quick", action="store_true", help="600 training rows, 2 epochs: a smoke run")
    parser.add_argument("--json", help="also write the rows (with every seed's figures) to this JSON file")
    parser.add_argument("--precision", help="bertfit's --precision for the transformer recipes (plain: its bf16)")
    parser.add_argument("--bucket", action="store_true", help="--bucket-by-length for bertfit's recipes")
    parser.add_argument("--train-rows", type=int, help="a sample of this many training rows (the same every seed)")
    parser.add_argument("--goemotions-rows", type=int, help="goemotions only: a sample of this many training rows "
                        "(e.g. 1500), over --train-rows")
    parser.add_argument("--epochs", type=int, help="the most epochs for every transformer recipe (plain: exactly)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="an extra recipe: the defaults with these train settings, e.g. "
                             "'fast-head:head_lr_scale=10,epochs=4' (repeatable; then name it in --recipes)")
    args = parser.parse_args()
    for spec in args.variant:
        name, _, assignments = spec.partition(":")
        RECIPES[name] = {key: _value(value) for key, _, value in
                         (item.partition("=") for item in assignments.split(",") if item)}
        ALL_RECIPES.append(name)
    recipes = args.recipes.split(",")
    unknown = sorted(set(recipes) - set(ALL_RECIPES))
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {', '.join(ALL_RECIPES)}")
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if shared_missing():
        return 0
    quiet()
    logging.getLogger("bertfit").setLevel(logging.INFO)  # per-epoch lines on stderr
    seeds = [args.first_seed + i for i in range(args.seeds)]
    print(f"{measured_on()}; seeds {', '.join(map(str, seeds))}\n", flush=True)
    extra = {"precision": args.precision} if args.precision else {}
    if args.bucket:
        extra["bucket_by_length"] = True
    epochs = args.epochs or (2 if args.quick else None)
    rows = []
    for name in args.datasets.split(","):
        if not (SHARED / name).is_dir():
            print(f"skipped {name}: not in {SHARED}", file=sys.stderr)
            continue
        sample = (args.goemotions_rows if name == "goemotions" else None) or args.train_rows or (
            600 if args.quick else None)
        rows += run(name, recipes, seeds, sample, epochs, extra)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"measured_on": measured_on(), "seeds": seeds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
