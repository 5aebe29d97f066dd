"""bertfit's Trainer rows and batch order (bertfit.training.trainer): nothing dropped, nothing mislabelled."""

from __future__ import annotations

import numpy as np
import pytest

from bertfit.training.trainer import ClassifierTrainer, EncodedSplit, LengthBuckets


def test_sorted_by_length_keeps_each_text_with_its_label():
    ids = [[1, 5, 6, 2], [1, 2], [1, 7, 2], [1, 8, 2]]
    split = EncodedSplit({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}, np.array([0, 1, 2, 3]))
    ordered = split.sorted_by_length()
    assert [len(ordered[i]["input_ids"]) for i in range(4)] == [2, 3, 3, 4]
    assert sorted((tuple(ordered[i]["input_ids"]), ordered[i]["labels"]) for i in range(4)) == \
        sorted((tuple(split[i]["input_ids"]), split[i]["labels"]) for i in range(4))
    assert [ordered[i]["labels"] for i in range(4)] == [1, 2, 3, 0]  # stable: equal lengths keep their order


def test_length_buckets_yield_every_row_once_in_batches_of_similar_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 200, size=1000).tolist()
    sampler = LengthBuckets(lengths, batch_size=16, seed=1, pool_batches=8)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(1000)) and sorted(second) == list(range(1000))
    assert first != second  # a new order every epoch
    assert list(LengthBuckets(lengths, 16, seed=1, pool_batches=8)) == first  # the same seed, the same order
    spread = [np.ptp([lengths[i] for i in first[s:s + 16]]) for s in range(0, 1000, 16)]
    random_spread = [np.ptp([lengths[i] for i in rng.permutation(1000)[:16]]) for _ in range(20)]
    assert np.median(spread) < np.median(random_spread) / 4  # far less padding than random batches


def _optimizer(model, scale, tmp_path):
    import torch
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, weight_decay=0.01, use_cpu=True,
                             report_to="none")
    trainer = ClassifierTrainer(model=model, args=args, head_lr_scale=scale)
    optimizer = trainer.create_optimizer()
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert set(lr_of) == {id(p) for p in named.values() if p.requires_grad}  # every trainable tensor, once
    assert isinstance(optimizer, torch.optim.Optimizer)
    lrs = {name: lr_of.get(id(p)) for name, p in named.items()}
    return lrs, {name: decay_of.get(id(p)) for name, p in named.items()}


def test_head_lr_scale_raises_only_the_new_head(tiny_model_dir, tmp_path):
    from bertfit.training.backbone import freeze, load_base

    model, _ = load_base(str(tiny_model_dir), ("a", "b", "c"))
    lrs, decays = _optimizer(model, 10.0, tmp_path)
    assert lrs["classifier.weight"] == lrs["classifier.bias"] == pytest.approx(1e-3)
    assert all(lr == pytest.approx(1e-4) for name, lr in lrs.items() if not name.startswith("classifier."))
    assert decays["classifier.weight"] == 0.01 and decays["classifier.bias"] == 0.0  # Trainer's grouping kept
    # With the head alone training, the scale would only be another learning rate: it is not applied.
    head_only = freeze(load_base(str(tiny_model_dir), ("a", "b", "c"))[0], "head")
    lrs, _ = _optimizer(head_only, 10.0, tmp_path)
    assert [lr for lr in lrs.values() if lr is not None] == [pytest.approx(1e-4)] * 2  # the head's weight, bias


def test_the_head_learns_faster_by_default_for_multi_label_and_many_classes_only():
    from bertfit.config import TrainConfig
    from bertfit.training.trainer import FAST_HEAD_LR_SCALE, head_lr_scale

    assert head_lr_scale(TrainConfig(), multi_label=True) == FAST_HEAD_LR_SCALE > 1
    assert head_lr_scale(TrainConfig(), multi_label=False) == 1.0
    assert head_lr_scale(TrainConfig(), multi_label=False, classes=77) == FAST_HEAD_LR_SCALE  # many classes
    assert head_lr_scale(TrainConfig(head_lr_scale=1.0), multi_label=False, classes=77) == 1.0
    assert head_lr_scale(TrainConfig(head_lr_scale=3.0), multi_label=True) == 3.0  # the flag wins
    assert head_lr_scale(TrainConfig(head_lr_scale=3.0), multi_label=False) == 3.0
