"""Typed settings for reading data and training, validated once, every problem reported together.

The CLI's flags are these field names with dashes (``--learning-rate`` is ``learning_rate``);
the settings actually used are written into the saved model's ``bertfit.json``. This module
checks values only; it does not read data or load models.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from bertfit.encoding import LONG_TEXT_CHOICES, POOL_CHOICES
from bertfit.errors import UsageError

TRAIN_LAYER_CHOICES = ("head", "pooler", "all", "lora")
PRECISION_CHOICES = ("fp32", "bf16", "auto")
SELECT_BY_CHOICES = ("metric", "loss")
QUANTIZE_CHOICES = ("int8", "int8-emb4")  # export / compress: int8 matmuls; -emb4: embedding tables in 4-bit blocks


@dataclass
class DataConfig:
    """Where the text and labels are, and how a single file is split."""

    text_col: str | None = None  # None: found when unambiguous ("text", "sentence", ...)
    label_col: str | None = None  # None: found when unambiguous ("label", "labels", ...)
    text_pair_col: str | None = None  # sentence pairs: the second text (found for text_a/text_b, sentence1/2, ...)
    label_sep: str | None = None  # multi-label as delimited strings, e.g. ";" (JSON lists need no separator)
    validation_fraction: float = 0.15  # of a single file; a folder's own splits are used as given
    test_fraction: float = 0.15  # scored once, at the end; never chooses anything
    drop_leaks: bool = False  # False: texts shared across splits are an error; True: drop them from val/test
    seed: int = 42  # for the stratified split

    def problems(self) -> list[str]:
        found = _wrong_types(self)
        if found:
            return found
        if self.label_sep == "":
            found.append("--label-sep must not be empty; pass the character between labels, e.g. ';'")
        if self.text_pair_col is not None and self.text_pair_col in (self.text_col, self.label_col):
            found.append(f"--text-pair-col {self.text_pair_col!r} is also the text or label column; "
                         "pass a different column")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 1:
                found.append(f"--{_flag(name)} must be between 0 and 1 (exclusive), got {value}")
        if self.validation_fraction + self.test_fraction >= 0.9:
            found.append(
                "--validation-fraction plus --test-fraction must leave at least 10% for training, got "
                f"{self.validation_fraction + self.test_fraction:.2f}"
            )
        return found


@dataclass
class TrainConfig:
    """What to fine-tune and how. Defaults aim at a good model, not the quickest one."""

    model: str | None = None  # hub name or local folder; None: the embedded all-MiniLM-L6-v2
    train_layers: str = "all"  # head | pooler | N (last N encoder layers + pooler + head) | all | lora
    epochs: int | None = None  # None: from the data's size (see planned_epochs): 3 for large sets, up to 6 for small
    patience: int = 2  # stop after this many epochs without a better validation score; 0 turns it off
    select_by: str = "metric"  # metric: the epoch with the best validation accuracy (micro F1), loss breaks ties
    learning_rate: float | None = None  # None: chosen from the model's width (see default_learning_rate)
    head_lr_scale: float = 1.0  # the new classification head's learning rate, as a multiple of learning_rate
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int | None = None  # tokens kept per text; None: 256, or the model's limit if lower
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 42  # same seed, same metrics on CPU
    lora_r: int = 8  # LoRA rank, used with train_layers="lora"
    lora_alpha: int = 16
    encode_once: bool = True  # head / pooler / N: run the frozen layers once per text, not every epoch
    bucket_by_length: bool = True  # training batches of similar length (less padding); evaluation is sorted anyway
    precision: str = "fp32"  # fp32 | bf16 (mixed precision) | auto (bf16 where the CPU has native bf16)
    long_text: str = "truncate"  # truncate | head-tail | window (overlapping windows, logits pooled per text)
    stride: int | None = None  # window overlap in tokens; None: a quarter of max_length
    window_pool: str = "mean"  # mean | max: how a text's window logits are pooled
    class_weights: str = "none"  # none | balanced | FILE (JSON {label: weight}); single-label loss weights
    calibrate: bool = True  # temperature scaling fitted on validation (single-label)
    baseline: bool = True  # also fit TF-IDF + logistic regression on the same splits and print it beside
    report: bool = True  # write report.html (curves, confusion matrix, mistakes) into the saved folder

    def __post_init__(self) -> None:
        if isinstance(self.train_layers, int) and not isinstance(self.train_layers, bool):
            self.train_layers = str(self.train_layers)  # train_layers=2 from Python means the top 2 layers
        if isinstance(self.train_layers, str):
            self.train_layers = self.train_layers.strip().lower()

    def problems(self) -> list[str]:
        found = _wrong_types(self)
        if found:
            return found
        if not (self.train_layers in TRAIN_LAYER_CHOICES or re.fullmatch(r"[1-9][0-9]*", str(self.train_layers))):
            found.append(
                f"--train-layers must be one of {', '.join(TRAIN_LAYER_CHOICES)} or a positive "
                f"number of top encoder layers, got {self.train_layers!r}"
            )
        for name in ("epochs", "batch_size", "eval_batch_size", "max_length", "lora_r", "lora_alpha"):
            value = getattr(self, name)
            if name in ("max_length", "epochs") and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                found.append(f"--{_flag(name)} must be a positive whole number, got {value!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            found.append(f"--patience must be 0 (off) or a positive whole number, got {self.patience!r}")
        for name, choices in (("long_text", LONG_TEXT_CHOICES), ("window_pool", POOL_CHOICES),
                              ("select_by", SELECT_BY_CHOICES)):
            if getattr(self, name) not in choices:
                found.append(f"--{_flag(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 0):
            found.append(f"--stride must be 0 or a positive whole number, got {self.stride!r}")
        if self.precision not in PRECISION_CHOICES:
            found.append(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            found.append(f"--learning-rate must be between 0 and 1, got {self.learning_rate}")
        if not 0 < self.head_lr_scale <= 1000:
            found.append(f"--head-lr-scale must be above 0 and at most 1000, got {self.head_lr_scale}")
        if not 0 <= self.warmup_ratio < 1:
            found.append(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            found.append(f"--weight-decay must not be negative, got {self.weight_decay}")
        return found


def check(*configs: Any) -> None:
    """Raise one UsageError listing every problem in the given configs, or return quietly."""
    found = [problem for config in configs for problem in config.problems()]
    if found:
        raise UsageError("; ".join(found))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config from a dict, ignoring keys this version does not know (forward compatible)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in values.items() if key in known})


def _wrong_types(config: Any) -> list[str]:
    """Values of the wrong kind (e.g. "3e-5" read as text from a YAML file), before any range check."""
    found = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        allowed = str(f.type)
        if value is None and "None" in allowed:
            continue
        if allowed.startswith("float"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif allowed.startswith("int"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif allowed.startswith("bool"):
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            found.append(f"--{_flag(f.name)} must be {allowed.replace(' | None', '')}, got {value!r}")
    return found


def _flag(name: str) -> str:
    return name.replace("_", "-")
