"""Training speed: Hugging Face Trainer against bertfit, side by side in one process, repeated in alternating order.

Same data (../shared/datasets/phishing, never copied into this repo), same embedded model
(all-MiniLM-L6-v2), same hyperparameters, same machine, one run after the other:

  pooler  the seed tutorial's recipe: base frozen but the pooler, lr 2e-4, batch 8, 10 epochs.
          A = Trainer as the tutorial runs it; B = `bertfit train --train-layers pooler` (encode once).
  full    full fine-tuning, 3 epochs, lr 5e-5, batch 16.
          A  = Trainer at its best, as a careful user sets it: train_sampling_strategy="group_by_length"
               (batches of similar length) and eval batch 64; the ratio and the target are against A.
          B  = `bertfit train` with those flags (--bucket: `--bucket-by-length`, validation sorted by length).
          A0 = Trainer as the seed tutorial sets it: random batches, Trainer's default eval batch 8; a second
               reference row, for the record.

Every timer covers the same work: tokenizing, training with a validation pass per epoch, keeping
the best epoch and scoring the test split (bertfit also fits its temperature on validation; its
TF-IDF baseline is off). Each run is repeated --repeats times (default 3) in mirrored order
(A B A0, then A0 B A, then A B A0: bench/timing.py's alternate), every repeat with seed 42, so a
run's test accuracy should come out the same each time (the table says when it does not).
Printed per recipe and run: median and min-max of wall seconds and training samples/s, real
(unpadded) tokens/s, the share of this CPU's measured fp32 matmul peak, test accuracy and ROC AUC
per repeat, the ratio of the medians (B over A, and over A0) and whether the target is met. The
first line gives the git commit and the machine.

Target, full fine-tuning: B at least 1.3x A's samples/s at the same accuracy (B's accuracy not
below the lowest of the references' runs; one seed only: bench/accuracy.py --seeds speaks for
accuracy). Pooler: B at least 10x A's samples/s.

    python bench/speed.py --bucket                  # the full run the README quotes (about 2 hours on 2 cores)
    python bench/speed.py --bucket --recipes full   # full fine-tuning only (about 1 hour)
    python bench/speed.py --quick --bucket          # 600 training rows, fewer epochs: checks the ratio
    python bench/speed.py --quick --recipes full --repeats 1 --train-rows 60   # a smoke run (minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from timing import SHARED, alternate, measured_on, quiet, summary

HERE = Path(__file__).resolve().parent
# Trainer's defaults for what the recipes leave unsaid (no warm-up, no weight decay), stated for both runs:
# bertfit's own defaults (10% warm-up, 0.01 decay) would make B a different recipe.
TRAINER_DEFAULTS = {"warmup_ratio": 0.0, "weight_decay": 0.0}
RECIPES = {
    "pooler": {"train_layers": "pooler", "learning_rate": 2e-4, "batch_size": 8, "epochs": 10, **TRAINER_DEFAULTS},
    "full": {"train_layers": "all", "learning_rate": 5e-5, "batch_size": 16, "epochs": 3, **TRAINER_DEFAULTS},
}
# Per recipe: B's least multiple of A's median samples/s.
TARGETS = {"pooler": 10.0, "full": 1.3}
SEED = 42


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a square matmul on this CPU (the practical peak the model's matmuls can reach)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def encoder_parameters(model_path: str) -> int:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_path)
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def trainer_reference(prepared, recipe: dict, model_path: str, grouped: bool) -> dict:
    """A (grouped) or A0: the recipe with Hugging Face Trainer alone (no bertfit code).

    grouped: Trainer's own length grouping for training batches and evaluation in batches of 64, as a
    careful user sets it; otherwise the seed tutorial's settings (random batches, Trainer's eval batch 8).
    """
    import tempfile

    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(SEED)
    labels = prepared.labels
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(labels))
    if recipe["train_layers"] == "pooler":
        for name, parameter in model.bert.named_parameters():
            parameter.requires_grad = name.startswith("pooler")

    def encode(frame):
        # Each item keeps its "input_ids" list: that is where Trainer's length grouping reads the lengths
        # of a list-of-dicts dataset (LengthGroupedSampler without a length column).
        encoded = tokenizer(frame["text"].tolist(), truncation=True, max_length=256)
        ids = labels.encode(frame["label"].tolist())
        return [{**{k: encoded[k][i] for k in encoded}, "labels": int(ids[i])} for i in range(len(frame))]

    grouping = {"train_sampling_strategy": "group_by_length", "per_device_eval_batch_size": 64} if grouped else {}
    started = time.perf_counter()
    train_set, val_set = encode(prepared.train), encode(prepared.validation)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, num_train_epochs=recipe["epochs"], learning_rate=recipe["learning_rate"],
            per_device_train_batch_size=recipe["batch_size"], warmup_steps=recipe["warmup_ratio"],
            weight_decay=recipe["weight_decay"], eval_strategy="epoch", save_strategy="epoch",
            load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False,
            save_total_limit=1, report_to="none", seed=SEED, disable_tqdm=True, use_cpu=True, **grouping,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                          data_collator=DataCollatorWithPadding(tokenizer))
        with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its log dicts; keep stdout for the table
            trainer.train()
        # The test split is scored inside the timer, as bertfit's train() scores it inside its own.
        # With group_by_length, Trainer (5.x) also orders prediction by length and does not put the rows back:
        # its predictions are scored against the label_ids it returns, which come in the same order.
        scored = trainer.predict(encode(prepared.test))
    seconds = time.perf_counter() - started
    proba = torch.softmax(torch.as_tensor(scored.predictions).float(), -1).numpy()
    return _measure(seconds, proba, prepared, recipe, train_set, truth=np.asarray(scored.label_ids).astype(int))


def bertfit_run(prepared, recipe: dict, extra: dict) -> dict:
    """B: bertfit with the same hyperparameters (no early stopping, so the same number of epochs)."""
    from bertfit.training.run import train

    started = time.perf_counter()
    # The TF-IDF baseline beside is a second model, not training speed: off here (it takes ~2 s on phishing).
    result = train(prepared, out=None, progress=False, patience=0, baseline=False, seed=SEED, **recipe, **extra)
    seconds = time.perf_counter() - started
    texts = prepared.test["text"].tolist()
    proba = result.classifier.predict_proba(texts)
    tokenizer = result.classifier.tokenizer
    train_set = [{"input_ids": ids} for ids in tokenizer(prepared.train["text"].tolist(), truncation=True,
                                                         max_length=256)["input_ids"]]
    return _measure(seconds, proba, prepared, recipe, train_set)


def _measure(seconds: float, proba: np.ndarray, prepared, recipe: dict, train_set: list,
             truth: np.ndarray | None = None) -> dict:
    from bertfit.metrics import classification_metrics

    truth = prepared.labels.encode(prepared.test["label"].tolist()) if truth is None else truth
    metrics = classification_metrics(truth, proba)
    samples = len(prepared.train) * recipe["epochs"]
    tokens = sum(len(item["input_ids"]) for item in train_set) * recipe["epochs"]
    return {"seconds": round(seconds, 1), "samples_per_s": round(samples / seconds, 2),
            "tokens_per_s": round(tokens / seconds), "accuracy": round(metrics["accuracy"], 4),
            "auc": round(metrics["auc"], 4)}


# ---------------------------------------------------------------------------------------------
# The bench


def run_recipe(name: str, runs: dict[str, Callable[[], dict]], repeats: int) -> dict[str, list[dict]]:
    """Every run `repeats` times, in mirrored order (A B A0, A0 B A, ...); the measurements per run key."""
    results: dict[str, list[dict]] = {key: [] for key in runs}
    for repeat, key in alternate(list(runs), repeats):
        measured = runs[key]()
        results[key].append(measured)
        print(json.dumps({"recipe": name, "run": key, "repeat": repeat + 1, **measured}), file=sys.stderr, flush=True)
    return results


def summarise(name: str, labels: dict[str, str], results: dict[str, list[dict]], peak_gflops: float,
              per_token_flops: int) -> tuple[list[dict], list[str]]:
    """Table rows (median and min-max per run, ratios of medians) and the verdict lines."""
    rows, notes = [], []
    medians = {}
    for key, measured in results.items():
        seconds = summary([m["seconds"] for m in measured])
        speed = summary([m["samples_per_s"] for m in measured])
        tokens = statistics.median(m["tokens_per_s"] for m in measured)
        accuracy = [m["accuracy"] for m in measured]
        medians[key] = {"samples_per_s": speed[0], "accuracy": statistics.median(accuracy)}
        share = round(tokens * per_token_flops / (peak_gflops * 1e9), 3)
        if name == "pooler" and key == "B":  # encode once skips the frozen work of every epoch but one
            share = "-"
        rows.append({"recipe": name, "run": labels[key], "seconds": seconds, "samples_per_s": speed,
                     "tokens_per_s": round(tokens), "share_of_fp32_peak": share, "accuracy": accuracy,
                     "auc": [m["auc"] for m in measured], "per_repeat": measured})
        if len(set(accuracy)) > 1:
            notes.append(f"note ({name}, {key}): the repeats disagree on test accuracy ({accuracy}) although every "
                         "repeat uses seed 42: the training is not deterministic on this machine")
    for ref in (k for k in ("A", "A0") if k in medians):
        ratio = medians["B"]["samples_per_s"] / medians[ref]["samples_per_s"]
        rows.append({"recipe": name, "run": f"B / {ref} (samples/s, ratio of medians)", "ratio": round(ratio, 2)})
    ratio = medians["B"]["samples_per_s"] / medians["A"]["samples_per_s"]
    speed_met = ratio >= TARGETS[name]
    verdict = (f"target ({name}): B at least {TARGETS[name]}x A's samples/s: {ratio:.2f}x, "
               f"{'met' if speed_met else 'NOT met'}")
    if name == "full":
        references = [m["accuracy"] for key in ("A", "A0") for m in results[key]]
        b = medians["B"]["accuracy"]
        same = b >= min(references)
        verdict += (f"; accuracy B {b:.4f}, the references' runs (A, A0) {min(references):.4f}-"
                    f"{max(references):.4f}: {'within or above' if same else 'BELOW'} their spread; "
                    f"target {'met' if speed_met and same else 'NOT met'} (one seed here: accuracy claims need "
                    "bench/accuracy.py --seeds)")
    notes.append(verdict)
    return rows, notes


def table(rows: list[dict]) -> str:
    def span(triple: tuple[float, float, float], digits: int) -> str:
        return f"{triple[0]:.{digits}f} ({triple[1]:.{digits}f}-{triple[2]:.{digits}f})"

    lines = ["| recipe | run | seconds, median (min-max) | training samples/s, median (min-max) | tokens/s | "
             "share of fp32 peak | test accuracy per repeat | ROC AUC per repeat |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "ratio" in r:
            lines.append(f"| {r['recipe']} | **{r['run']}** | | **{r['ratio']}x** | | | | |")
            continue
        lines.append(f"| {r['recipe']} | {r['run']} | {span(r['seconds'], 1)} | {span(r['samples_per_s'], 2)} | "
                     f"{r['tokens_per_s']:,} | {r['share_of_fp32_peak']} | {', '.join(map(str, r['accuracy']))} | "
                     f"{', '.join(map(str, r['auc']))} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--quick", action="store_true", help="600 training rows, 1 epoch (pooler: 3)")
    parser.add_argument("--train-rows", type=int, help="a seeded sample of this many training rows (smoke runs)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="times each run is repeated (mirrored order: A B A0, A0 B A, ...)")
    parser.add_argument("--recipes", default="pooler,full", help="pooler, full or both (comma-separated)")
    parser.add_argument("--dataset", default="phishing")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--precision", default="fp32", help="bertfit's --precision for B (fp32, bf16, auto)")
    parser.add_argument("--bucket", action="store_true", help="B with --bucket-by-length")
    args = parser.parse_args()
    unknown = sorted(set(args.recipes.split(",")) - set(RECIPES))
    if unknown or args.repeats < 1:
        parser.error(f"--recipes must name {', '.join(RECIPES)}, got {unknown}" if unknown
                     else f"--repeats must be at least 1, got {args.repeats}")
    if not (SHARED / args.dataset).is_dir():
        print(f"skipped: {SHARED / args.dataset} not found (set BERTFIT_SHARED to the folder holding datasets/)")
        return 0
    quiet()
    import torch

    from bertfit.backends import cpu_has_bf16
    from bertfit.config import DataConfig
    from bertfit.data.cleaning import prepare
    from bertfit.training.backbone import default_model_path

    prepared = prepare(SHARED / args.dataset, DataConfig(drop_leaks=True))
    rows_wanted = args.train_rows or (600 if args.quick else None)
    if rows_wanted:
        prepared.train = prepared.train.sample(n=min(rows_wanted, len(prepared.train)), random_state=0)
    # Emulated bf16 runs at a fraction of a GFLOP/s (minutes for one 2048 matmul): measured where native only.
    peaks = {name: round(matmul_peak(name), 1) for name in ("fp32", "bf16") if name == "fp32" or cpu_has_bf16()}
    bf16_peak = f"bf16 {peaks['bf16']} GFLOP/s" if "bf16" in peaks else "bf16 not native on this CPU"
    print(f"{measured_on()}; {torch.get_num_threads()} torch threads; "
          f"CPU matmul peak: fp32 {peaks['fp32']} GFLOP/s, {bf16_peak}")
    print(f"{args.dataset}: {len(prepared.train)} training rows, {len(prepared.validation)} validation, "
          f"{len(prepared.test)} test; {args.repeats} repeats per run in mirrored order, seed {SEED}\n", flush=True)
    model_path = default_model_path()
    b_label = "B: bertfit" + (", --bucket-by-length" if args.bucket else "") + (
        f", --precision {args.precision}" if args.precision != "fp32" else "")
    rows, notes = [], []
    for name in args.recipes.split(","):
        recipe = dict(RECIPES[name])
        if args.quick:
            recipe["epochs"] = 3 if name == "pooler" else 1
        extra = {"precision": args.precision, "bucket_by_length": args.bucket}
        runs = {"A": partial(trainer_reference, prepared, recipe, model_path, grouped=name == "full"),
                "B": partial(bertfit_run, prepared, recipe, extra)}
        labels = {"A": "A: HF Trainer (tutorial)" if name == "pooler" else "A: Trainer, group_by_length, eval batch 64",
                  "B": b_label + (", encode once" if name == "pooler" else "")}
        if name == "full":
            runs["A0"] = partial(trainer_reference, prepared, recipe, model_path, grouped=False)
            labels["A0"] = "A0: Trainer as the tutorial sets it"
        results = run_recipe(name, runs, args.repeats)
        # Matmul work per real token: forward 2 x P, backward 4 x P more when the encoder trains
        # (P = encoder parameters, embeddings excluded); the frozen pooler recipe is forward-bound.
        per_token = (6 if name == "full" else 2) * encoder_parameters(model_path)
        recipe_rows, recipe_notes = summarise(name, labels, results, peaks["fp32"], per_token)
        for row in recipe_rows:
            row.update(epochs=recipe["epochs"], train_rows=len(prepared.train))
        rows += recipe_rows
        notes += recipe_notes
    print(table(rows))
    print()
    print("\n".join(notes))
    if args.json:
        Path(args.json).write_text(json.dumps({"measured_on": measured_on(), "peaks": peaks,
                                               "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
