"""Seconds per training step of the contrastive body: how it trains today against the two ways it used to.

The few-shot method (bertfit.training.contrastive) trains the body on pairs of texts. Three ways of
running one step, each on the same pairs, from the same starting weights, one after another:

  layer+joint    the mean-pooling layer on top of the body during training, run over every token, and
                 both sides of a batch padded together to the longer side (bertfit before commit 229082b)
  pooled+joint   the layer's first token computed from the mean alone (``pooled_through``), sides
                 padded together
  pooled+sides   today's: ``pooled_through``, each side padded on its own (``PairCollator``), as
                 sentence-transformers (setfit's trainer) pads them

The pairs come from a seeded sample of rows per class of a public training split (banking77's short
questions by default), as `bench/fewshot.py` draws them; batch 16 pairs, AdamW, the body in train mode.
Printed: per way, the median seconds per step over --repeats (mirrored order), the min-max, the
tokens per step, and the ratio to today's.

    python bench/pair_steps.py                    # banking77, 8 rows per class, 40 steps, 3 repeats
    python bench/pair_steps.py --dataset trec --steps 20
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np
import pandas as pd
import torch

from timing import SHARED, alternate, measured_on, quiet, shared_missing, spread, summary

WAYS = ("layer+joint", "pooled+joint", "pooled+sides")


def joint(tokenizer, ids: list[list[int]], pairs: np.ndarray) -> list[dict]:
    """One padded batch of both sides, a's first (the old collator)."""
    return [tokenizer.pad([{"input_ids": ids[i]} for i in np.concatenate([pairs[:, 0], pairs[:, 1]])],
                          return_tensors="pt")]


def sides(tokenizer, ids: list[list[int]], pairs: np.ndarray) -> list[dict]:
    """Each side padded on its own: bertfit's own collator."""
    from bertfit.training.contrastive import PairCollator, pair_sides

    return list(pair_sides(PairCollator(tokenizer)([{"a": ids[a], "b": ids[b], "similar": float(t)}
                                                    for a, b, t in pairs])))


def similarity(forward, batches: list[dict]) -> torch.Tensor:
    if len(batches) == 1:
        a, b = forward(batches[0]).chunk(2)
    else:
        a, b = (forward(batch) for batch in batches)
    return torch.cosine_similarity(a, b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="banking77")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40, help="training steps per way and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shared_missing():
        return 0
    quiet()
    from bertfit.training.backbone import default_model_path, load_base
    from bertfit.training.contrastive import sample_pairs
    from bertfit.training.pooling import PooledBody, append_mean_pooling, mean_pooling_layer
    from fewshot import sample

    print(f"# {measured_on()}; torch threads {torch.get_num_threads()}", file=sys.stderr)
    rows = sample(pd.read_csv(SHARED / args.dataset / "train.csv"), args.per_class, 42)
    labels = pd.factorize(rows["label"])[0]
    torch.manual_seed(42)
    model, tokenizer = load_base(default_model_path(), sorted(map(str, set(rows["label"]))))
    ids = tokenizer(rows["text"].astype(str).tolist(), truncation=True, max_length=256)["input_ids"]
    pairs = sample_pairs(labels, 20, 42, most=16 * args.steps)
    steps = [pairs[k:k + 16] for k in range(0, len(pairs), 16)]

    layer = mean_pooling_layer(model)
    stacked = copy.deepcopy(model)
    append_mean_pooling(stacked, copy.deepcopy(layer))
    start = {"layer+joint": stacked.base_model.state_dict(), "pooled": model.base_model.state_dict()}
    pooled = PooledBody(model.base_model, layer)

    def run(way: str) -> tuple[float, int]:
        if way == "layer+joint":
            stacked.base_model.load_state_dict(start["layer+joint"])
            body, forward = stacked.base_model, lambda batch: stacked.base_model(**batch).pooler_output
        else:
            model.base_model.load_state_dict(start["pooled"])
            body, forward = pooled, lambda batch: pooled(**batch)
        collate = sides if way == "pooled+sides" else joint
        body.train()
        optimizer = torch.optim.AdamW([p for p in body.parameters() if p.requires_grad], lr=2e-5)
        tokens, started = 0, time.perf_counter()
        for chunk in steps:
            batches = collate(tokenizer, ids, chunk)
            tokens += sum(batch["input_ids"].numel() for batch in batches)
            target = torch.tensor(chunk[:, 2], dtype=torch.float32)
            loss = torch.nn.functional.mse_loss(similarity(forward, batches), target)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return (time.perf_counter() - started) / len(steps), tokens // len(steps)

    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    tokens: dict[str, int] = {}
    for _, way in alternate(WAYS, args.repeats):
        per_step, tokens[way] = run(way)
        seconds[way].append(per_step)
        print(f"{way}: {per_step:.3f} s per step", file=sys.stderr, flush=True)

    today = summary(seconds["pooled+sides"])[0]
    print(f"{args.dataset}, {args.per_class} rows per class, batch 16 pairs, {len(steps)} steps x {args.repeats}")
    print("| way | seconds per step (median) | min-max | tokens per step | time vs today's |")
    print("| --- | --- | --- | --- | --- |")
    for way in WAYS:
        middle = summary(seconds[way])[0]
        print(f"| {way} | {middle:.3f} | {spread(seconds[way], 3)} | {tokens[way]} | {middle / today:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
