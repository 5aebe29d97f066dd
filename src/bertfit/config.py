"""Typed settings for reading data, training and serving, validated once, every problem reported together.

Each field carries its flag's help (:func:`setting`); the CLI builds its flags from these fields
(``--learning-rate`` is ``learning_rate``), so a setting's meaning and default are written once.
The settings actually used are written into the saved model's ``bertfit.json``. This module
checks values only (a ``--class-weights`` file is read, as part of the value); it does not read
data or load models.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertfit.backends import cores
from bertfit.encoding import LONG_TEXT_CHOICES, POOL_CHOICES
from bertfit.errors import UsageError
from bertfit.record import finite_number

TRAIN_LAYER_CHOICES = ("head", "pooler", "all", "lora")
METHOD_CHOICES = ("auto", "finetune", "contrastive")
REPORT_TO_CHOICES = ("tensorboard", "mlflow")  # --report-to: none, or one or more of these
PRECISION_CHOICES = ("fp32", "bf16", "auto")
SELECT_BY_CHOICES = ("metric", "loss")
QUANTIZE_CHOICES = ("int8", "int8-emb4")  # export / compress: int8 matmuls; -emb4: embedding tables in 4-bit blocks


def setting(default: Any = None, help: str = "", *, factory: Any = None, shown: str | None = None) -> Any:
    """A config field with its flag's help: the one place a setting's meaning and default are written.

    The CLI builds ``--field-name`` from it, appending the default to the help (``shown`` replaces
    that text where the default is computed, e.g. one per core).
    """
    metadata = {"help": help, "shown": shown}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """Where the text and labels are, and how a single file is split."""

    text_col: str | None = setting(None, "column holding the text", shown="found when unambiguous, e.g. 'text'")
    label_col: str | None = setting(None, "column holding the label", shown="found when unambiguous, e.g. 'label'")
    text_pair_col: str | None = setting(None, "sentence pairs: the column holding the second text",
                                        shown="found for text_a/text_b, sentence1/2, ...")
    label_sep: str | None = setting(None, "multi-label as delimited strings: the separator, e.g. ';' "
                                          "(JSON lists need none)")
    validation_fraction: float = setting(0.15, "share of a single file held out to choose the epoch; a folder's "
                                               "own splits are used as given")
    test_fraction: float = setting(0.15, "share of a single file held out and scored once at the end")
    drop_leaks: bool = setting(False, "drop texts shared across splits from validation/test instead of refusing")
    seed: int = setting(42, "seed for the split and the training (same seed, same metrics on CPU)")

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
        found += _seed_problems(self.seed)
        if self.validation_fraction + self.test_fraction >= 0.9:
            found.append(
                "--validation-fraction plus --test-fraction must leave at least 10% for training, got "
                f"{self.validation_fraction + self.test_fraction:.2f}"
            )
        return found


@dataclass
class TrainConfig:
    """What to fine-tune and how. Defaults aim at a good model, not the quickest one."""

    model: str | None = setting(None, "hub name or local folder", shown="the embedded all-MiniLM-L6-v2")
    method: str = setting("auto", "auto | finetune | contrastive (few labels: the body trained on label pairs, "
                                  "then a linear head); auto: contrastive below 30 training rows per class, "
                                  "single-label texts only")
    train_layers: str = setting("all", "what trains: head | pooler | N (top N encoder layers, pooler and head) | "
                                       "all | lora")
    epochs: int | None = setting(None, "the most epochs; the learning rate decays over them",
                                 shown="by data size: enough for ~500 steps, 3 to 6")
    train_embeddings: bool = setting(True, "with --train-layers all, train the word-embedding table too; off: it "
                                           "stays as pretrained (a step updates a fifth to a half fewer weights: "
                                           "a little faster on short texts)")
    more_epochs: bool = setting(True, "when the planned epochs end with validation still rising by a point or "
                                      "more and its loss falling, train on in short rounds while it improves "
                                      "(at most twice the plan; not with --epochs)")
    patience: int = setting(2, "epochs without a better validation score before stopping; 0 = off")
    select_by: str = setting("metric", "metric | loss: the epoch kept has the best validation accuracy (micro F1 "
                                       "for multi-label; the lower loss breaks ties), or the lowest validation loss")
    learning_rate: float | None = setting(None, "peak learning rate", shown="by model width: 1e-4 for MiniLM, "
                                                                           "5e-5 for base")
    head_lr_scale: float | None = setting(None, "the new classification head's learning rate, as a multiple of "
                                               "--learning-rate (applied when the body trains too)",
                                          shown="10 for multi-label and for 20 classes or more, 1 otherwise")
    batch_size: int = setting(16, "training batch size")
    eval_batch_size: int = setting(64, "evaluation batch size")
    max_length: int | None = setting(None, "tokens kept per text; longer texts are handled by --long-text and "
                                           "counted", shown="256, or the model's limit if lower")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    warmup_ratio: float = setting(0.1, "share of steps spent warming the learning rate up")
    seed: int = setting(42, "seed for the split and the training (same seed, same metrics on CPU)")
    lora_r: int = setting(8, "LoRA rank with --train-layers lora")
    lora_alpha: int = setting(16, "LoRA alpha with --train-layers lora")
    encode_once: bool = setting(True, "with frozen layers (head, pooler, N), run them once per text, not every "
                                      "epoch")
    bucket_by_length: bool = setting(True, "batch texts of similar length together: less padding work")
    precision: str = setting("fp32", "fp32 | bf16 (mixed precision) | auto: bf16 where the CPU has it natively")
    long_text: str = setting("truncate", "texts over --max-length: truncate | head-tail | window (overlapping "
                                         "windows, logits pooled per text)")
    stride: int | None = setting(None, "--long-text window: tokens shared by neighbouring windows",
                                 shown="a quarter of --max-length")
    window_pool: str = setting("mean", "--long-text window: mean | max of a text's window logits")
    class_weights: str = setting("none", "none | balanced | FILE (JSON {label: weight}): single-label loss weights")
    calibrate: bool = setting(True, "fit a temperature on validation so probabilities match accuracy "
                                    "(single-label)")
    baseline: bool = setting(True, "also fit TF-IDF + logistic regression on the same splits and print its test "
                                   "score beside")
    blend: bool = setting(True, "average the model's probabilities with the baseline's, weighted on validation, "
                                "where that beats both there (the baseline is then saved in the folder, as arrays)")
    report: bool = setting(True, "write report.html (curves, confusion matrix, mistakes) into the model folder")
    report_to: str = setting("none", "experiment tracking: none | tensorboard | mlflow, or both with a comma "
                                     "(tensorboard: event files in OUT.tensorboard/; mlflow: MLFLOW_TRACKING_URI, "
                                     "else MLflow's local default)")

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
        for name, choices in (("method", METHOD_CHOICES), ("long_text", LONG_TEXT_CHOICES),
                              ("window_pool", POOL_CHOICES), ("select_by", SELECT_BY_CHOICES)):
            if getattr(self, name) not in choices:
                found.append(f"--{_flag(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 0):
            found.append(f"--stride must be 0 or a positive whole number, got {self.stride!r}")
        found += _seed_problems(self.seed)
        if self.precision not in PRECISION_CHOICES:
            found.append(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            found.append(f"--learning-rate must be between 0 and 1, got {self.learning_rate}")
        if self.head_lr_scale is not None and not 0 < self.head_lr_scale <= 1000:
            found.append(f"--head-lr-scale must be above 0 and at most 1000, got {self.head_lr_scale}")
        if not 0 <= self.warmup_ratio < 1:
            found.append(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            found.append(f"--weight-decay must not be negative, got {self.weight_decay}")
        for read, value in ((report_destinations, self.report_to), (read_class_weights, self.class_weights)):
            try:
                read(value)
            except UsageError as err:
                found.append(str(err))
        return found


@dataclass
class ServeConfig:
    """Limits and batching of ``bertfit serve``.

    The defaults suit a CPU (see bench/serve.py): a batch of small texts costs about as much as its
    texts one by one there, so batches stay small, and one batch per core runs on one thread each.
    On a GPU, large batches pay: --max-batch 64 --parallel-batches 1 --threads 1.
    """

    max_batch: int = setting(2, "texts in one forward pass, gathered from concurrent requests")
    max_wait_ms: float = setting(2.0, "how long a batch waits for more texts when no other batch could start "
                                      "(0: never)")
    max_texts: int = setting(256, "texts in one request")
    max_chars: int = setting(10_000, "characters in one text (and in its pair)")
    max_body_bytes: int = setting(4 * 1024 * 1024, "size of one request body")
    read_timeout: float = setting(30.0, "seconds a client has to send a request's headers, then its body; "
                                        "slower: 408, or the connection is closed")
    threads: int = setting(1, "the model's threads in each forward pass")
    parallel_batches: int = setting(factory=cores, help="forward passes that may run at once in each worker",
                                    shown="one per core")

    def problems(self) -> list[str]:
        found = _wrong_types(self)
        if found:
            return found
        # max_wait_ms may be 0: no waiting for company, a batch is whatever has queued
        return [f"--{_flag(f.name)} must be {'0 or more' if f.name == 'max_wait_ms' else 'positive'}, "
                f"got {getattr(self, f.name)}" for f in dataclasses.fields(self)
                if not (getattr(self, f.name) >= 0 if f.name == "max_wait_ms" else getattr(self, f.name) > 0)]


def report_destinations(value: str | None) -> list[str]:
    """``--report-to`` as a list: empty for "none", else one or more of REPORT_TO_CHOICES (comma-separated)."""
    names = [name.strip().lower() for name in (value or "none").split(",") if name.strip()]
    if names in ([], ["none"]):
        return []
    if any(name not in REPORT_TO_CHOICES for name in names):
        raise UsageError(f"--report-to takes none, or one or more of {', '.join(REPORT_TO_CHOICES)} separated by "
                         f"commas; got {value!r}")
    return list(dict.fromkeys(names))


CLASS_WEIGHT_WORDS = ("none", "balanced")  # --class-weights besides a file


def read_class_weights(spec: str) -> dict[str, float] | None:
    """A ``--class-weights`` FILE as {label: weight}, each weight a finite number above 0; None for none / balanced.

    The file's labels are checked against the data when it is read (``training.trainer``).
    """
    if spec in CLASS_WEIGHT_WORDS:
        return None
    file = Path(spec)
    if not file.is_file():
        raise UsageError(f"--class-weights must be none, balanced or a JSON file of {{label: weight}}; "
                         f"{spec!r} is neither (no such file)")
    try:
        given = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"--class-weights file {file} is not valid JSON ({err}); write {{\"label\": weight}}") \
            from None
    if not isinstance(given, dict):
        raise UsageError(f"--class-weights file {file} must hold one JSON object {{label: weight}}, got "
                         f"{json.dumps(given)[:80]}")
    bad = {label: weight for label, weight in given.items() if not (finite_number(weight) and weight > 0)}
    if bad:
        shown = ", ".join(f"{label!r}: {json.dumps(weight)[:40]}" for label, weight in list(bad.items())[:5])
        raise UsageError(f"--class-weights file {file}: every weight must be a finite number above 0; got {shown}; "
                         f"write e.g. {{\"{next(iter(bad))}\": 2.0}}")
    return {label: float(weight) for label, weight in given.items()}



MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit


def _seed_problems(seed: int) -> list[str]:
    if not 0 <= seed <= MAX_SEED:
        return [f"--seed must be a whole number from 0 to {MAX_SEED}, got {seed}"]
    return []


def check(*configs: Any) -> None:
    """Raise one UsageError listing every problem in the given configs, or return quietly."""
    found = list(dict.fromkeys(problem for config in configs for problem in config.problems()))  # --seed: both
    if found:
        raise UsageError("; ".join(found))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config from a dict, ignoring keys this version does not know (forward compatible)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in values.items() if key in known})


def value_type(cls: type, name: str) -> tuple[type, bool]:
    """A config field's value type (int, float, bool or str) and whether None is allowed."""
    hint = typing.get_type_hints(cls)[name]
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] or [hint]
    return kinds[0], type(None) in typing.get_args(hint)


def _wrong_types(config: Any) -> list[str]:
    """Values of the wrong kind (e.g. "3e-5" read as text from a YAML file), before any range check."""
    found = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind, optional = value_type(type(config), f.name)
        if value is None and optional:
            continue
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and not math.isfinite(value):  # nan and inf pass every range check written with < and >
                found.append(f"--{_flag(f.name)} must be a finite number, got {value!r}")
                continue
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            found.append(f"--{_flag(f.name)} must be {kind.__name__}, got {value!r}")
    return found


def _flag(name: str) -> str:
    return name.replace("_", "-")
