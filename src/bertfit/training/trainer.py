"""bertfit's ``transformers.Trainer``: the rows it reads, the order it reads them in, and its loss.

- :class:`EncodedSplit`: a tokenized split (padding is left to each batch); each row remembers its text.
- :class:`LengthBuckets`: ``--bucket-by-length``'s training order (batches of texts of similar length).
- :class:`ClassifierTrainer`: Trainer with one loss for every path (class-weighted cross-entropy,
  per-label binary cross-entropy) and evaluation in dataset order; ``distill`` subclasses it.
- :func:`resolve_class_weights`: ``--class-weights`` into the loss's weights.
- :func:`head_lr_scale`: the new head's learning rate over the body's (10x for multi-label and many classes).
- :func:`batch_within`: a batch size cut to the rows it batches.

It does not load models, freeze them or decide what to train (``backbone``, ``training``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import Trainer

from bertfit.backends import HEAD_MODULES
from bertfit.config import TrainConfig, read_class_weights
from bertfit.data.cleaning import PreparedData
from bertfit.encoding import encode
from bertfit.errors import UsageError
from bertfit.training.cached import target

log = logging.getLogger(__name__)

MAX_CLASS_WEIGHT = 1e6  # a file's weights above it are scaled down (the loss reads only their ratios)
MAX_WEIGHT_SPREAD = 1e6  # the most one class may weigh over another
FAST_HEAD_LR_SCALE = 10.0  # a multi-label head's, and a single-label one's from MANY_CLASSES classes
MANY_CLASSES = 20


class EncodedSplit:
    """Tokenized rows for Trainer (a map-style dataset); padding is done per batch by the collator.

    ``owner`` maps each input row to its text (long texts in windows give one text several rows);
    ``targets`` are per input row: a class id, or a 0/1 row for multi-label.
    """

    def __init__(self, encoded: dict[str, list], targets: np.ndarray, owner: np.ndarray | None = None):
        self.encoded = encoded
        self.label_ids = targets
        self.owner = np.arange(len(targets)) if owner is None else owner
        self.soft: np.ndarray | None = None  # distillation: the teacher's logits per input row

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.encoded.items()}
        item["labels"] = target(self.label_ids[i])
        if self.soft is not None:
            item["teacher_logits"] = self.soft[i].tolist()
        return item

    def sorted_by_length(self) -> EncodedSplit:
        """The same rows, shortest first: evaluation batches then pad little (metrics ignore order)."""
        order = np.argsort([len(ids) for ids in self.encoded["input_ids"]], kind="stable")
        encoded = {key: [values[i] for i in order] for key, values in self.encoded.items()}
        return EncodedSplit(encoded, self.label_ids[order], self.owner[order])


def encode_split(
    tokenizer: Any, frame: pd.DataFrame, targets: np.ndarray, max_length: int, long_text: str = "truncate",
    stride: int | None = None,
) -> tuple[EncodedSplit, int]:
    """Tokenize a split (texts, and pairs when it has them); returns the dataset and how many texts were too long."""
    pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
    encoded = encode(tokenizer, frame["text"].tolist(), pairs, max_length=max_length, long_text=long_text,
                     stride=stride)
    return EncodedSplit(encoded.features, targets[encoded.owner], encoded.owner), encoded.over_length


class LengthBuckets(torch.utils.data.Sampler):
    """Training order for ``--bucket-by-length``: batches of texts of similar length, in random order.

    Each epoch: shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, cut it
    into batches, then shuffle the batches (a short one goes last). Transformers' own group-by-length
    sampler sizes its pools by the data (9 batches for 600 rows), so one long text pads many batches;
    larger pools pad less, and shuffling the batches keeps an epoch from running from long to short.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, pool_batches: int = 64):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.pool = batch_size * pool_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        """Trainer (through accelerate) names the epoch, so a resumed run draws the same order."""
        self.epoch = epoch

    def __iter__(self):
        # The order depends on (seed, epoch) alone, not on how many epochs this object has served.
        generator = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = generator.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start:start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        # The loader cuts this stream every batch_size rows, so the one short batch must come last.
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        for i in generator.permutation(len(full)):
            yield from full[i].tolist()
        for batch in short:
            yield from batch.tolist()




class ClassifierTrainer(Trainer):
    """Trainer with bertfit's samplers: length buckets for training, and evaluation in dataset order
    (bertfit sorts validation by length itself; Trainer's group-by-length would reshuffle it)."""

    def __init__(self, *args: Any, bucket_lengths: list[int] | None = None, multi_label: bool = False,
                 class_weights: torch.Tensor | None = None, head_lr_scale: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.head_lr_scale = head_lr_scale
        self.bucket_lengths = bucket_lengths
        self.multi_label = multi_label
        self.class_weights = class_weights

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """One loss for every path (full model, cached top, LoRA): cross-entropy (class-weighted when
        asked) for single-label, binary cross-entropy per label for multi-label."""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        inputs.pop("teacher_logits", None)  # read by the distillation trainer alone
        outputs = model(**inputs)
        loss = self.label_loss(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss

    def label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Against the labels: cross-entropy (weighted when asked), or binary cross-entropy per label."""
        if self.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        return nn.functional.cross_entropy(logits.float(), labels, weight=weight)

    def create_optimizer(self, model: Any = None) -> Any:
        """Trainer's AdamW, with the new head's parameters at ``head_lr_scale`` times the learning rate.

        The scale applies only when the body trains too (with the head alone it would just be another
        learning rate). Trainer's own grouping (no weight decay on biases and LayerNorm) is kept.
        """
        model = self.model if model is None else model
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        head = {name for name, _ in named if HEAD_MODULES & set(name.split("."))}
        if self.optimizer is not None or self.head_lr_scale == 1 or not head or len(head) == len(named):
            return super().create_optimizer(model)
        decay = set(self.get_decay_parameter_names(model))
        groups = []
        for in_head, scale in ((False, 1.0), (True, self.head_lr_scale)):
            for decays in (True, False):
                params = [p for name, p in named if (name in head) == in_head and (name in decay) == decays]
                if params:
                    groups.append({"params": params, "weight_decay": self.args.weight_decay if decays else 0.0,
                                   "lr": self.args.learning_rate * scale})
        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.bucket_lengths is None:
            return super()._get_train_sampler(train_dataset)
        return LengthBuckets(self.bucket_lengths, self.args.train_batch_size, self.args.seed)

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        return torch.utils.data.SequentialSampler(eval_dataset)


def batch_within(batch_size: int, rows: int) -> int:
    """A batch size no larger than the rows it batches: the same batches, and nothing sized by the flag alone.

    Trainer allocates some buffers by the batch size rather than by the rows in a batch (each
    evaluation batch's loss is repeated ``eval_batch_size`` times), so a huge size would fail there.
    """
    return max(1, min(batch_size, rows))


def head_lr_scale(config: TrainConfig, multi_label: bool, classes: int = 2) -> float:
    """The head's learning rate over the body's: --head-lr-scale, else FAST_HEAD_LR_SCALE for multi-label
    and for MANY_CLASSES classes or more, else 1.

    A multi-label head starts at the labels' base rates and learns each label from a per-label
    sigmoid, whose gradients are small for rare labels: at the body's rate it was still catching up
    when training ended. So was a single-label head over many classes, each class's row of weights
    moved by its own few rows. A head over a few classes learns fast enough at the body's rate
    (bench/accuracy.py).
    """
    if config.head_lr_scale is not None:
        return config.head_lr_scale
    return FAST_HEAD_LR_SCALE if multi_label or classes >= MANY_CLASSES else 1.0


def resolve_class_weights(spec: str, prepared: PreparedData) -> torch.Tensor | None:
    """--class-weights: none, balanced (rows / (classes x rows of the class), on train), or a JSON file.

    The loss (cross-entropy averaged by the weights of the rows) reads only the weights' ratios, so
    a file's weights are scaled down when the largest is above MAX_CLASS_WEIGHT (their sums stay
    finite in float32), and a file whose weights span more than MAX_WEIGHT_SPREAD is refused (the
    smallest would round to nothing beside the largest).
    """
    given = read_class_weights(spec)
    if spec == "none":
        return None
    if prepared.multi_label:
        raise UsageError("--class-weights applies to single-label data; multi-label models tune a threshold per "
                         "label on validation instead: drop --class-weights")
    names = prepared.labels.names
    if given is None:  # balanced
        counts = np.array([prepared.labels.balance(prepared.train["label"])[name] for name in names], dtype=float)
        weights = len(prepared.train) / (len(names) * counts)
    else:
        unknown = sorted(set(map(str, given)) - set(names))
        if unknown:
            raise UsageError(f"--class-weights file {spec} names label(s) {unknown[:5]} not in the training data "
                             f"(labels: {list(names)[:10]})")
        weights = np.array([given.get(name, 1.0) for name in names], dtype=float)  # unnamed labels weigh 1
        low, high = int(np.argmin(weights)), int(np.argmax(weights))
        if weights[high] / weights[low] > MAX_WEIGHT_SPREAD:
            raise UsageError(f"--class-weights file {spec}: {names[high]!r} weighs {weights[high]:g} and "
                             f"{names[low]!r} {weights[low]:g} (labels not named weigh 1), more than "
                             f"{MAX_WEIGHT_SPREAD:g} times as much; only the ratios count: bring them closer")
        if weights[high] > MAX_CLASS_WEIGHT:
            weights = weights / weights[high]
    log.info("class weights: %s", {name: round(float(w), 3) for name, w in zip(names, weights, strict=True)})
    return torch.tensor(weights, dtype=torch.float32)
