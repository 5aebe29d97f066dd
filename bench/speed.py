"""Training speed: plain Hugging Face Trainer against bertfit, side by side in one process.

Same data (../shared/datasets/phishing, never copied into this repo), same embedded model
(all-MiniLM-L6-v2), same hyperparameters, same machine, one after the other:

  pooler  the seed tutorial's recipe: base frozen but the pooler, lr 2e-4, batch 8, 10 epochs.
          A = Trainer as the tutorial runs it; B = `bertfit train --train-layers pooler` (encode once).
  full    full fine-tuning, 3 epochs, lr 5e-5, batch 16. A = Trainer; B = `bertfit train` with those flags.

Both timers cover the same work: tokenizing, training with a validation pass per epoch, keeping
the best epoch and scoring the test split (bertfit also fits its temperature on validation; its
TF-IDF baseline is off). Printed per recipe: wall seconds, training samples/s, real (unpadded)
tokens/s, test accuracy and ROC AUC, and the ratio A/B. Also this CPU's measured matmul peak
(fp32 and bf16), so the figures can be read against the limit.

    python bench/speed.py            # the full run the README quotes (about 30 minutes on 2 cores)
    python bench/speed.py --quick    # 600 training rows, fewer epochs: checks the ratio in minutes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("BERTFIT_SHARED", HERE.parent.parent / "shared")) / "datasets"
# Trainer's defaults for what the recipes leave unsaid (no warm-up, no weight decay), stated for both runs:
# bertfit's own defaults (10% warm-up, 0.01 decay) would make B a different recipe.
TRAINER_DEFAULTS = {"warmup_ratio": 0.0, "weight_decay": 0.0}
RECIPES = {
    "pooler": {"train_layers": "pooler", "learning_rate": 2e-4, "batch_size": 8, "epochs": 10, **TRAINER_DEFAULTS},
    "full": {"train_layers": "all", "learning_rate": 5e-5, "batch_size": 16, "epochs": 3, **TRAINER_DEFAULTS},
}


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


def trainer_reference(prepared, recipe: dict, model_path: str) -> dict:
    """A: the recipe as a notebook runs it with Hugging Face Trainer (no bertfit code)."""
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

    set_seed(42)
    labels = prepared.labels
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(labels))
    if recipe["train_layers"] == "pooler":
        for name, parameter in model.bert.named_parameters():
            parameter.requires_grad = name.startswith("pooler")

    def encode(frame):
        encoded = tokenizer(frame["text"].tolist(), truncation=True, max_length=256)
        ids = labels.encode(frame["label"].tolist())
        return [{**{k: encoded[k][i] for k in encoded}, "labels": int(ids[i])} for i in range(len(frame))]

    started = time.perf_counter()
    train_set, val_set = encode(prepared.train), encode(prepared.validation)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, num_train_epochs=recipe["epochs"], learning_rate=recipe["learning_rate"],
            per_device_train_batch_size=recipe["batch_size"], warmup_steps=recipe["warmup_ratio"],
            weight_decay=recipe["weight_decay"], eval_strategy="epoch", save_strategy="epoch",
            load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False,
            save_total_limit=1, report_to="none", seed=42, disable_tqdm=True, use_cpu=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                          data_collator=DataCollatorWithPadding(tokenizer))
        with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its log dicts; keep stdout for the table
            trainer.train()
        # The test split is scored inside the timer, as bertfit's train() scores it inside its own.
        logits = trainer.predict(encode(prepared.test)).predictions
    seconds = time.perf_counter() - started
    proba = torch.softmax(torch.as_tensor(logits).float(), -1).numpy()
    return _row("A: HF Trainer", seconds, proba, prepared, recipe, train_set)


def bertfit_run(prepared, recipe: dict, extra: dict) -> dict:
    """B: bertfit with the same hyperparameters (no early stopping, so the same number of epochs)."""
    from bertfit.training import train

    started = time.perf_counter()
    # The TF-IDF baseline beside is a second model, not training speed: off here (it takes ~2 s on phishing).
    result = train(prepared, out=None, progress=False, patience=0, baseline=False, **recipe, **extra)
    seconds = time.perf_counter() - started
    texts = prepared.test["text"].tolist()
    proba = result.classifier.predict_proba(texts)
    tokenizer = result.classifier.tokenizer
    train_set = [{"input_ids": ids} for ids in tokenizer(prepared.train["text"].tolist(), truncation=True,
                                                         max_length=256)["input_ids"]]
    return _row("B: bertfit", seconds, proba, prepared, recipe, train_set)


def _row(name: str, seconds: float, proba: np.ndarray, prepared, recipe: dict, train_set: list) -> dict:
    from bertfit.metrics import classification_metrics

    metrics = classification_metrics(prepared.labels.encode(prepared.test["label"].tolist()), proba)
    samples = len(prepared.train) * recipe["epochs"]
    tokens = sum(len(item["input_ids"]) for item in train_set) * recipe["epochs"]
    return {"run": name, "seconds": round(seconds, 1), "samples_per_s": round(samples / seconds, 1),
            "tokens_per_s": round(tokens / seconds), "accuracy": round(metrics["accuracy"], 4),
            "auc": round(metrics["auc"], 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 training rows, 2 epochs (pooler: 3)")
    parser.add_argument("--recipes", default="pooler,full")
    parser.add_argument("--dataset", default="phishing")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--precision", default="fp32", help="bertfit's --precision for B (fp32, bf16, auto)")
    parser.add_argument("--bucket", action="store_true", help="B with --bucket-by-length")
    args = parser.parse_args()
    if not (SHARED / args.dataset).is_dir():
        print(f"skipped: {SHARED / args.dataset} not found (set BERTFIT_SHARED to the folder holding datasets/)")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    from bertfit.config import DataConfig
    from bertfit.data import prepare
    from bertfit.training import default_model_path

    prepared = prepare(SHARED / args.dataset, DataConfig(drop_leaks=True))
    if args.quick:
        prepared.train = prepared.train.sample(n=600, random_state=0)
    from bertfit.model import cpu_has_bf16

    # Emulated bf16 runs at a fraction of a GFLOP/s (minutes for one 2048 matmul): measured where native only.
    peaks = {name: round(matmul_peak(name), 1) for name in ("fp32", "bf16") if name == "fp32" or cpu_has_bf16()}
    bf16_peak = f"bf16 {peaks['bf16']} GFLOP/s" if "bf16" in peaks else "bf16 not native on this CPU"
    print(f"threads {torch.get_num_threads()}, matmul peak GFLOP/s: {peaks}", file=sys.stderr)
    rows = []
    for name in args.recipes.split(","):
        recipe = dict(RECIPES[name])
        if args.quick:
            recipe["epochs"] = 3 if name == "pooler" else 1
        a = trainer_reference(prepared, recipe, default_model_path())
        b = bertfit_run(prepared, recipe, {"precision": args.precision, "bucket_by_length": args.bucket})
        # Matmul work per real token: forward 2 x P, backward 4 x P more when the encoder trains
        # (P = encoder parameters, embeddings excluded); the frozen pooler recipe is forward-bound.
        per_token = (6 if name == "full" else 2) * encoder_parameters(default_model_path())
        for row in (a, b):
            row.update(recipe=name, epochs=recipe["epochs"], train_rows=len(prepared.train))
            row["share_of_fp32_peak"] = round(row["tokens_per_s"] * per_token / (peaks["fp32"] * 1e9), 3)
        if name == "pooler":  # encode once skips the frozen work of every epoch but one: no like-for-like share
            b["share_of_fp32_peak"] = "-"
        print(json.dumps([a, b]), file=sys.stderr, flush=True)
        rows += [a, b, {"recipe": name, "run": "ratio A/B", "seconds": round(a["seconds"] / b["seconds"], 2)}]
    print(f"CPU matmul peak: fp32 {peaks['fp32']} GFLOP/s, {bf16_peak}; "
          f"{torch.get_num_threads()} threads; {len(prepared.train)} training rows\n")
    print("| recipe | run | seconds | samples/s | tokens/s | share of fp32 peak | test accuracy | ROC AUC |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['recipe']} | {r['run']} | {r['seconds']} | {r.get('samples_per_s', '')} | "
              f"{r.get('tokens_per_s', '')} | {r.get('share_of_fp32_peak', '')} | {r.get('accuracy', '')} | "
              f"{r.get('auc', '')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
